//! Request and trace ids: unique in practice, never secrets (nothing is authorised by
//! one). Each thread starts its counter at random once, then counts through SplitMix64, a
//! bijection of the counter: cheap enough for every request, where drawing from the
//! thread's ChaCha generator was about 2% of a proxied request's instructions.

use std::cell::Cell;

thread_local! {
    static COUNTER: Cell<u64> = Cell::new(rand::random());
}

/// 64 bits, different on every call in this thread.
pub fn next_u64() -> u64 {
    COUNTER.with(|c| {
        let v = c.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
        c.set(v);
        let mut z = v;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    })
}

/// 128 bits from two draws.
pub fn next_u128() -> u128 {
    (u128::from(next_u64()) << 64) | u128::from(next_u64())
}

/// Writes the low `4 * out.len()` bits of `value` into `out` as lowercase hex digits,
/// most significant first.
pub fn write_hex(out: &mut [u8], value: u128) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let n = out.len();
    for (k, d) in out.iter_mut().enumerate() {
        let shift = 4 * (n - 1 - k);
        *d = HEX[if shift < 128 {
            (value >> shift) & 0xf
        } else {
            0
        } as usize];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_written_most_significant_first() {
        let mut out = [0u8; 8];
        write_hex(&mut out, 0x1234_abcd);
        assert_eq!(&out, b"1234abcd");
        let mut short = [0u8; 3];
        write_hex(&mut short, 0xfff_0123);
        assert_eq!(&short, b"123");
        let mut wide = [0u8; 34];
        write_hex(&mut wide, u128::MAX);
        assert_eq!(&wide[..2], b"00", "digits beyond 128 bits are zero");
        assert!(wide[2..].iter().all(|&d| d == b'f'));
    }

    #[test]
    fn draws_do_not_repeat_within_or_across_threads() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            assert!(seen.insert(next_u64()), "a draw came twice");
        }
        let other: Vec<u64> = std::thread::spawn(|| (0..100).map(|_| next_u64()).collect())
            .join()
            .unwrap();
        assert!(other.iter().all(|v| !seen.contains(v)));
    }
}
