//! Turning logits into the next token. The chain and its order follow llama.cpp's default
//! sampler: repetition penalty → top-k → top-p → min-p → temperature → draw.
//! Temperature 0 is greedy (argmax after the penalty).

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// 0 = greedy.
    pub temperature: f32,
    /// Keep the k most likely tokens; 0 = off.
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability reaches p; 1 = off.
    pub top_p: f32,
    /// Drop tokens less likely than min_p × the most likely one; 0 = off.
    pub min_p: f32,
    /// Divide positive (multiply negative) logits of recently seen tokens; 1 = off.
    pub repeat_penalty: f32,
    /// How many recent tokens the penalty looks at.
    pub repeat_last_n: usize,
    pub seed: u64,
}

impl Default for SamplingParams {
    /// llama.cpp's defaults.
    fn default() -> Self {
        SamplingParams {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            seed: 0,
        }
    }
}

impl SamplingParams {
    pub fn greedy() -> Self {
        SamplingParams { temperature: 0.0, ..Default::default() }
    }

    /// Rejects values with no meaning, naming the option.
    pub fn validate(&self) -> Result<(), String> {
        let check = |ok: bool, what: &str| if ok { Ok(()) } else { Err(what.to_string()) };
        check(self.temperature.is_finite() && self.temperature >= 0.0, "temperature must be ≥ 0")?;
        check((0.0..=1.0).contains(&self.top_p), "top-p must be between 0 and 1")?;
        check((0.0..=1.0).contains(&self.min_p), "min-p must be between 0 and 1")?;
        check(self.repeat_penalty.is_finite() && self.repeat_penalty > 0.0, "repeat penalty must be > 0")
    }
}

pub struct Sampler {
    params: SamplingParams,
    rng: ChaCha8Rng,
    /// (token, logit) candidates, reused between calls.
    candidates: Vec<(u32, f32)>,
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Self {
        let rng = ChaCha8Rng::seed_from_u64(params.seed);
        Sampler { params, rng, candidates: Vec::new() }
    }

    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// A uniform draw in [0, 1) from this sampler's seeded stream, for a device-side sampler
    /// that applies the same rule.
    pub fn next_uniform(&mut self) -> f32 {
        (self.rng.next_u32() >> 8) as f32 / (1u32 << 24) as f32
    }

    /// Picks the next token from `logits`, given the tokens so far (`history`).
    pub fn sample(&mut self, logits: &[f32], history: &[u32]) -> u32 {
        if logits.is_empty() {
            return 0;
        }
        let p = &self.params;
        self.candidates.clear();
        self.candidates.extend(logits.iter().enumerate().map(|(i, &l)| (i as u32, l)));
        let cands = &mut self.candidates;

        if p.repeat_penalty != 1.0 {
            let recent = &history[history.len().saturating_sub(p.repeat_last_n)..];
            let mut seen = recent.to_vec();
            seen.sort_unstable();
            seen.dedup();
            for &t in &seen {
                if let Some(c) = cands.get_mut(t as usize) {
                    c.1 = if c.1 <= 0.0 { c.1 * p.repeat_penalty } else { c.1 / p.repeat_penalty };
                }
            }
        }

        if p.temperature <= 0.0 {
            return argmax(cands);
        }

        // Most likely first; ties to the lower id so results do not depend on sort stability.
        let by_logit = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        if p.top_k > 0 && p.top_k < cands.len() {
            cands.select_nth_unstable_by(p.top_k - 1, by_logit);
            cands.truncate(p.top_k);
        }
        cands.sort_unstable_by(by_logit);

        if p.top_p < 1.0 {
            let probs = softmax_of(cands, 1.0);
            let mut cum = 0.0;
            let mut keep = cands.len();
            for (i, pr) in probs.iter().enumerate() {
                cum += pr;
                if cum >= f64::from(p.top_p) {
                    keep = i + 1;
                    break;
                }
            }
            cands.truncate(keep.max(1));
        }

        if p.min_p > 0.0 {
            let threshold = cands[0].1 + p.min_p.ln();
            let keep = cands.iter().take_while(|c| c.1 >= threshold).count();
            cands.truncate(keep.max(1));
        }

        let probs = softmax_of(cands, p.temperature);
        let r = (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let mut cum = 0.0;
        for (c, pr) in cands.iter().zip(&probs) {
            cum += pr;
            if r < cum {
                return c.0;
            }
        }
        cands.last().map_or(0, |c| c.0)
    }
}

/// Index of the largest logit; the lowest index wins a tie.
pub fn argmax(cands: &[(u32, f32)]) -> u32 {
    let mut best = (0u32, f32::NEG_INFINITY);
    for &c in cands {
        if c.1 > best.1 {
            best = c;
        }
    }
    best.0
}

/// Probabilities of `cands` at temperature `t`, in f64.
fn softmax_of(cands: &[(u32, f32)], t: f32) -> Vec<f64> {
    let max = cands.iter().map(|c| c.1).fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f64> = cands.iter().map(|c| (f64::from(c.1 - max) / f64::from(t)).exp()).collect();
    let sum: f64 = e.iter().sum();
    e.into_iter().map(|v| v / sum).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(f: impl FnOnce(&mut SamplingParams)) -> SamplingParams {
        let mut p = SamplingParams { temperature: 1.0, top_k: 0, top_p: 1.0, min_p: 0.0, ..Default::default() };
        f(&mut p);
        p
    }

    fn histogram(p: SamplingParams, logits: &[f32], draws: usize) -> Vec<usize> {
        let mut s = Sampler::new(p);
        let mut h = vec![0; logits.len()];
        for _ in 0..draws {
            h[s.sample(logits, &[]) as usize] += 1;
        }
        h
    }

    #[test]
    fn greedy_takes_the_argmax() {
        let mut s = Sampler::new(SamplingParams::greedy());
        assert_eq!(s.sample(&[0.1, 2.0, -1.0, 1.9], &[]), 1);
    }

    #[test]
    fn repetition_penalty_can_change_the_greedy_choice() {
        let mut s = Sampler::new(SamplingParams { repeat_penalty: 1.5, ..SamplingParams::greedy() });
        assert_eq!(s.sample(&[0.1, 2.0, -1.0, 1.9], &[1]), 3);
    }

    #[test]
    fn full_distribution_matches_softmax() {
        let logits = [0.0f32, 1.0, 2.0];
        let h = histogram(params(|_| {}), &logits, 30_000);
        let z: f32 = logits.iter().map(|l| l.exp()).sum();
        for (i, &count) in h.iter().enumerate() {
            let expected = logits[i].exp() / z;
            let got = count as f32 / 30_000.0;
            assert!((got - expected).abs() < 0.02, "token {i}: {got} vs {expected}");
        }
    }

    #[test]
    fn top_k_top_p_and_min_p_cut_the_tail() {
        let logits = [3.0f32, 2.9, 0.0, -1.0, 2.8];
        let h = histogram(params(|p| p.top_k = 2), &logits, 2000);
        assert_eq!(h[2] + h[3] + h[4], 0);
        // p(0) ≈ 0.36, p(1) ≈ 0.33, p(4) ≈ 0.30: top-p 0.5 keeps two tokens.
        let h = histogram(params(|p| p.top_p = 0.5), &logits, 2000);
        assert_eq!(h[2] + h[3] + h[4], 0);
        assert!(h[0] > 0 && h[1] > 0);
        // min-p 0.1 drops tokens with p < 0.1 · p_max, i.e. logit < 3 + ln 0.1 ≈ 0.70.
        let h = histogram(params(|p| p.min_p = 0.1), &logits, 2000);
        assert_eq!(h[2] + h[3], 0);
        assert!(h[4] > 0);
    }

    #[test]
    fn a_seed_reproduces_a_sequence() {
        let logits: Vec<f32> = (0..50).map(|i| (i as f32 * 0.3).sin()).collect();
        let run = |seed| {
            let mut s = Sampler::new(params(|p| p.seed = seed));
            (0..20).map(|_| s.sample(&logits, &[])).collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }
}
