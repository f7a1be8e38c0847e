package queryapi

import "testing"

func TestChooseEncoding(t *testing.T) {
	for accept, want := range map[string]string{
		"":                                  "",
		"gzip":                              "gzip",
		"GZIP":                              "gzip",
		"gzip, deflate, br":                 "gzip",
		"deflate, gzip":                     "deflate",
		"gzip;q=0.5, zstd":                  "zstd",
		"gzip;q=0, identity":                "",
		"compress, x-gzip, lz4":             "",
		"br;q=0.8, gzip;q=0.8, deflate;q=1": "deflate",
		" zstd ; q=0.1 ":                    "zstd",
	} {
		if got := chooseEncoding(accept); got != want {
			t.Errorf("chooseEncoding(%q) = %q, want %q", accept, got, want)
		}
	}
}
