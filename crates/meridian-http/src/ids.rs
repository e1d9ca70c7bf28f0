//! Request and trace ids, written as hex by hand into a buffer on the stack: the `hex`
//! crate's iterator collected into a String was 4% of the instructions of a 1 KiB hit.

/// Writes the low `4 * out.len()` bits of `value` into `out` as lowercase hex digits,
/// most significant first.
pub fn write_hex(out: &mut [u8], value: u128) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    // Least significant digit last; past 128 bits the value is zero.
    let mut v = value;
    for d in out.iter_mut().rev() {
        *d = HEX[(v & 0xf) as usize];
        v >>= 4;
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
}
