package collector

import "testing"

// VRF IDs (IE 234 ingressVRFID, 235 egressVRFID) go to InVRF and OutVRF,
// in NetFlow v9 as in IPFIX, and swap in a biflow's reverse flow as the
// interfaces do.
func TestVRFIDs(t *testing.T) {
	vrfs := append(append([]tf{}, basicV4...), tf{10, 4, 0}, tf{14, 4, 0}, tf{ieIngressVRFID, 4, 0}, tf{ieEgressVRFID, 4, 0})
	record := append(basicV4Record(40000, 80, 500, 5), rec(uint32(3), uint32(4), uint32(10), uint32(4200000000))...)

	v9 := newNFv9(1000, uint32(t0.Unix()), 0, 1).template(256, vrfs...).data(256, record)
	f := newTestDecoder().Decode(t0, exporterA, v9.bytes(), nil)
	if len(f) != 1 || f[0].InVRF != 10 || f[0].OutVRF != 4200000000 || f[0].InIf != 3 {
		t.Fatalf("NetFlow v9: %+v", f)
	}

	biflow := append(vrfs, tf{1, 8, penReverse}, tf{2, 8, penReverse})
	ipfix := newIPFIX(0, 0, 1).template(256, biflow...).data(256, append(record, rec(uint64(9000), uint64(7))...))
	f = newTestDecoder().Decode(t0, exporterA, ipfix.bytes(), nil)
	if len(f) != 2 {
		t.Fatalf("IPFIX biflow: %d flows", len(f))
	}
	if fwd, rev := f[0], f[1]; fwd.InVRF != 10 || fwd.OutVRF != 4200000000 || rev.InVRF != 4200000000 || rev.OutVRF != 10 || rev.InIf != 4 {
		t.Errorf("forward %+v\nreverse %+v", fwd, rev)
	}
}
