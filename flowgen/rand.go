package flowgen

import (
	"math"
	"math/bits"
)

// rng is xoshiro256** seeded through splitmix64. It is our own so that a
// seed gives the same traffic with every Go release (math/rand/v2 does not
// promise a stable sequence for its helper methods), and it is a value
// type with no allocation per draw.
type rng struct{ s [4]uint64 }

func newRNG(seed uint64) rng {
	var r rng
	x := seed
	for i := range r.s {
		x += 0x9e3779b97f4a7c15
		z := x
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
		z = (z ^ (z >> 27)) * 0x94d049bb133111eb
		r.s[i] = z ^ (z >> 31)
	}
	return r
}

func rotl(x uint64, k uint) uint64 { return x<<k | x>>(64-k) }

func (r *rng) u64() uint64 {
	s := &r.s
	result := rotl(s[1]*5, 7) * 9
	t := s[1] << 17
	s[2] ^= s[0]
	s[3] ^= s[1]
	s[1] ^= s[2]
	s[0] ^= s[3]
	s[2] ^= t
	s[3] = rotl(s[3], 45)
	return result
}

// intn returns a value in [0, n); n must be > 0. Lemire's multiply-shift
// (the tiny bias for huge n does not matter for traffic).
func (r *rng) intn(n int) int {
	hi, _ := bits.Mul64(r.u64(), uint64(n))
	return int(hi)
}

// rangeIn returns a value in [lo, hi].
func (r *rng) rangeIn(lo, hi int) int { return lo + r.intn(hi-lo+1) }

// float returns a value in [0, 1).
func (r *rng) float() float64 { return float64(r.u64()>>11) / (1 << 53) }

// chance reports true with probability p.
func (r *rng) chance(p float64) bool { return r.float() < p }

// pareto draws from a Pareto distribution with scale xm and shape alpha:
// most values near xm, a few very large ones (alpha near 1: heavy tail).
func (r *rng) pareto(xm, alpha float64) float64 {
	u := 1 - r.float() // (0, 1]
	return xm / math.Pow(u, 1/alpha)
}

// normal draws a standard normal value (Box-Muller, one of the pair).
func (r *rng) normal() float64 {
	u1 := 1 - r.float()
	u2 := r.float()
	return math.Sqrt(-2*math.Log(u1)) * math.Cos(2*math.Pi*u2)
}

// lognormal draws exp(N(mu, sigma)).
func (r *rng) lognormal(mu, sigma float64) float64 { return math.Exp(mu + sigma*r.normal()) }

// weighted picks an index with probability proportional to cum's steps;
// cum holds cumulative weights.
func (r *rng) weighted(cum []float64) int {
	x := r.float() * cum[len(cum)-1]
	for i, c := range cum {
		if x < c {
			return i
		}
	}
	return len(cum) - 1
}
