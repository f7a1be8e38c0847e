package collector

import "testing"

// A memory budget sizes each worker's queue from the bytes the queues may
// take, within bounds; an explicit queue_length is what it says.
func TestQueueLengthFromBytes(t *testing.T) {
	for _, tc := range []struct {
		name    string
		workers int
		bytes   int64
		want    int
	}{
		{"default budget, 2 workers", 2, 96 << 20, 24576},
		{"default budget, 8 workers", 8, 96 << 20, 6144},
		{"tiny share: the minimum", 16, 1 << 20, 1024},
		{"huge share: the maximum", 1, 4 << 30, 65536},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			c.Workers = tc.workers
			if got := c.QueueLengthWithin(tc.bytes); got != tc.want {
				t.Errorf("QueueLengthWithin(%d) = %d, want %d", tc.bytes, got, tc.want)
			}
			c.QueueLength = tc.want
			if got := c.QueueBytes(); got > tc.bytes && tc.want != 1024 {
				t.Errorf("queues of %d take %d bytes, more than %d", tc.want, got, tc.bytes)
			}
		})
	}
	c := DefaultConfig()
	if got := c.QueueBytes(); got != int64(c.Workers)*DefaultQueueLength*smallDatagram {
		t.Errorf("QueueBytes with queue_length 0 = %d, want the default length's", got)
	}
}
