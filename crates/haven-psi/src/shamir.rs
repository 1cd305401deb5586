//! Reed–Solomon decoding of Shamir shares with errors: Berlekamp–Welch over F_ℓ.
//!
//! Shares are points `(x, y)`; the real ones lie on `f` of degree `< t`, synthetic ones are
//! random. With `n` distinct points of which at most `e = ⌊(n − t)/2⌋` are off `f`, `f` is the
//! unique polynomial of degree `< t` through at least `n − e` of them, and Berlekamp–Welch
//! finds it by solving one linear system (L. R. Welch, E. R. Berlekamp, US patent 4,633,470,
//! 1986; the textbook form in Gemmell & Sudan, "Highly resilient correctors for polynomials",
//! IPL 1992): find `E` monic of degree `e` and `Q` of degree `< t + e` with
//! `Q(x_i) = y_i · E(x_i)` for every `i`; then `f = Q / E`.
//!
//! Cost: Gaussian elimination on an `n × (t + 2e)` system, `O(n³)` scalar multiplications
//! (about 0.1 s for `n = 128` on one core; callers bound `n`).

use curve25519_dalek::scalar::Scalar;

/// Evaluates `coeffs[0] + coeffs[1]·x + …` (Horner).
pub(crate) fn eval(coeffs: &[Scalar], x: &Scalar) -> Scalar {
    coeffs.iter().rev().fold(Scalar::ZERO, |acc, c| acc * x + c)
}

/// Solves `A·v = b` (rows of `A` with `b` appended) by Gaussian elimination; free variables
/// are set to zero. `None` if the system is inconsistent.
fn solve(mut rows: Vec<Vec<Scalar>>, cols: usize) -> Option<Vec<Scalar>> {
    let n = rows.len();
    let mut pivot_cols = Vec::new();
    let mut r = 0;
    for c in 0..cols {
        let Some(p) =
            (r..n).find(|&i| rows.get(i).and_then(|row| row.get(c)) != Some(&Scalar::ZERO))
        else {
            continue;
        };
        rows.swap(r, p);
        let pivot_row = rows.get(r)?.clone();
        let inv = pivot_row.get(c)?.invert();
        let pivot_row: Vec<Scalar> = pivot_row.iter().map(|v| v * inv).collect();
        for (i, row) in rows.iter_mut().enumerate() {
            if i == r {
                continue;
            }
            let factor = *row.get(c)?;
            if factor == Scalar::ZERO {
                continue;
            }
            for (v, p) in row.iter_mut().zip(pivot_row.iter()) {
                *v -= factor * p;
            }
        }
        if let Some(slot) = rows.get_mut(r) {
            *slot = pivot_row;
        }
        pivot_cols.push(c);
        r += 1;
        if r == n {
            break;
        }
    }
    // Rows without a pivot must read 0 = 0.
    for row in rows.iter().skip(r) {
        if row.get(cols) != Some(&Scalar::ZERO) {
            return None;
        }
    }
    let mut solution = vec![Scalar::ZERO; cols];
    for (row, &c) in rows.iter().zip(pivot_cols.iter()) {
        *solution.get_mut(c)? = *row.get(cols)?;
    }
    Some(solution)
}

/// Divides `num` by the monic `den`: `(quotient, remainder)`.
fn divide(num: &[Scalar], den: &[Scalar]) -> Option<(Vec<Scalar>, Vec<Scalar>)> {
    let dd = den.len().checked_sub(1)?;
    if num.len() <= dd {
        return Some((Vec::new(), num.to_vec()));
    }
    let mut rem = num.to_vec();
    let mut quot = vec![Scalar::ZERO; num.len() - dd];
    for k in (0..quot.len()).rev() {
        let lead = *rem.get(k + dd)?;
        *quot.get_mut(k)? = lead;
        for (j, d) in den.iter().enumerate() {
            *rem.get_mut(k + j)? -= lead * d;
        }
    }
    rem.truncate(dd);
    Some((quot, rem))
}

/// The polynomial of degree `< t` through at least `n − ⌊(n − t)/2⌋` of the `points` (whose
/// x-coordinates must be distinct), or `None` if there is none.
pub(crate) fn berlekamp_welch(points: &[(Scalar, Scalar)], t: usize) -> Option<Vec<Scalar>> {
    let n = points.len();
    if t == 0 || n < t {
        return None;
    }
    let e = (n - t) / 2;
    let q_len = t + e;
    let cols = q_len + e;
    let mut rows = Vec::with_capacity(n);
    for (x, y) in points {
        let mut row = Vec::with_capacity(cols + 1);
        let mut power = Scalar::ONE;
        let mut powers = Vec::with_capacity(q_len + 1);
        for _ in 0..=q_len {
            powers.push(power);
            power *= x;
        }
        row.extend(powers.iter().take(q_len).copied());
        row.extend(powers.iter().take(e).map(|p| -(y * p)));
        row.push(y * powers.get(e)?);
        rows.push(row);
    }
    let solution = solve(rows, cols)?;
    let (q, e_low) = solution.split_at(q_len);
    let mut e_poly = e_low.to_vec();
    e_poly.push(Scalar::ONE);
    let (mut f, rem) = divide(q, &e_poly)?;
    if rem.iter().any(|c| *c != Scalar::ZERO) {
        return None;
    }
    while f.last() == Some(&Scalar::ZERO) {
        f.pop();
    }
    if f.len() > t {
        return None;
    }
    let agree = points.iter().filter(|(x, y)| eval(&f, x) == *y).count();
    if agree < n - e {
        return None;
    }
    f.resize(t, Scalar::ZERO);
    Some(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;

    fn random_poly(rng: &mut rand_chacha::ChaCha20Rng, t: usize) -> Vec<Scalar> {
        (0..t).map(|_| Scalar::random(rng)).collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// With `n ≥ t + 2e` the polynomial comes back exactly, wherever the errors are.
        #[test]
        fn corrects_up_to_half_the_redundancy(seed in any::<u64>(), t in 1usize..12, extra in 0usize..10) {
            let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(seed);
            let f = random_poly(&mut rng, t);
            let n = t + extra;
            let errors = extra / 2;
            let mut points: Vec<(Scalar, Scalar)> = (0..n)
                .map(|_| { let x = Scalar::random(&mut rng); (x, eval(&f, &x)) })
                .collect();
            for p in points.iter_mut().take(errors) {
                p.1 = Scalar::random(&mut rng);
            }
            // Shuffle so the errors are not always first.
            use rand::seq::SliceRandom;
            points.shuffle(&mut rng);
            prop_assert_eq!(berlekamp_welch(&points, t), Some(f));
        }

        /// Fewer than `t` points on `f`: `f` is never returned. (The decoder may return some
        /// other polynomial through the points — with `n = t` points it always can — which is
        /// why [`crate::reveal::reconstruct`] accepts a decoding only if payloads open under it.)
        #[test]
        fn below_threshold_never_yields_the_polynomial(seed in any::<u64>(), t in 2usize..12, noise in 0usize..8) {
            let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(seed);
            let f = random_poly(&mut rng, t);
            let mut points: Vec<(Scalar, Scalar)> = (0..t - 1)
                .map(|_| { let x = Scalar::random(&mut rng); (x, eval(&f, &x)) })
                .collect();
            for _ in 0..noise {
                points.push((Scalar::random(&mut rng), Scalar::random(&mut rng)));
            }
            let decoded = berlekamp_welch(&points, t);
            prop_assert_ne!(decoded.as_ref(), Some(&f));
            if noise == 0 {
                prop_assert_eq!(decoded, None);
            }
        }
    }

    #[test]
    fn too_many_errors_fail_rather_than_mislead() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
        let t = 5;
        let f = random_poly(&mut rng, t);
        // 8 real, 4 random: n = 12, e = 3 < 4 — beyond unique decoding.
        let mut points: Vec<(Scalar, Scalar)> = (0..8)
            .map(|_| {
                let x = Scalar::random(&mut rng);
                (x, eval(&f, &x))
            })
            .collect();
        for _ in 0..4 {
            points.push((Scalar::random(&mut rng), Scalar::random(&mut rng)));
        }
        assert_eq!(berlekamp_welch(&points, t), None);
        // One more real point (n = 13, e = 4) and it decodes.
        let x = Scalar::random(&mut rng);
        points.push((x, eval(&f, &x)));
        assert_eq!(berlekamp_welch(&points, t), Some(f));
    }
}
