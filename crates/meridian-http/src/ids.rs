//! Request and trace ids, and viewer addresses, written by hand: the `hex` crate's iterator
//! collected into a String was 4% of the instructions of a 1 KiB hit, and formatting an
//! address through `Display` cost an edge function's hit 1,300 instructions.

/// Writes the low `4 * out.len()` bits of `value` into `out` as lowercase hex digits,
/// most significant first: two digits per byte of `value`, from a table (a digit at a time
/// was 250 instructions of every proxied request's two 32-digit ids).
pub fn write_hex(out: &mut [u8], value: u128) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    const PAIRS: [[u8; 2]; 256] = {
        let mut t = [[0; 2]; 256];
        let mut i = 0;
        while i < 256 {
            t[i] = [HEX[i >> 4], HEX[i & 15]];
            i += 1;
        }
        t
    };
    // Least significant digits last; past 128 bits the value is zero.
    let mut v = value;
    let mut rest = out;
    while rest.len() >= 2 {
        let (head, pair) = rest.split_at_mut(rest.len() - 2);
        pair.copy_from_slice(&PAIRS[(v & 0xff) as usize]);
        v >>= 8;
        rest = head;
    }
    if let Some(d) = rest.first_mut() {
        *d = HEX[(v & 0xf) as usize];
    }
}

/// The longest IPv4 address as text (`255.255.255.255`).
pub const IPV4_TEXT_MAX: usize = 15;

/// Writes an IPv4 address as `Display` does into `out`; returns the length written.
pub fn write_ipv4(out: &mut [u8; IPV4_TEXT_MAX], v4: std::net::Ipv4Addr) -> usize {
    let mut n = 0;
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            out[n] = b'.';
            n += 1;
        }
        if octet >= 100 {
            out[n] = b'0' + octet / 100;
            n += 1;
        }
        if octet >= 10 {
            out[n] = b'0' + octet / 10 % 10;
            n += 1;
        }
        out[n] = b'0' + octet % 10;
        n += 1;
    }
    n
}

/// An address as `IpAddr`'s `Display` writes it (IPv4 by hand; IPv6 through `Display`).
pub fn ip_text(ip: std::net::IpAddr) -> String {
    let std::net::IpAddr::V4(v4) = ip else {
        return ip.to_string();
    };
    let mut buf = [0; IPV4_TEXT_MAX];
    let n = write_ipv4(&mut buf, v4);
    // Digits and dots only.
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_read_as_display_writes_them() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.100.9.255",
            "192.168.1.10",
            "255.255.255.255",
            "::1",
            "2001:db8::8a2e:370:7334",
            "::ffff:192.0.2.1",
        ] {
            let ip: std::net::IpAddr = ip.parse().unwrap();
            assert_eq!(ip_text(ip), ip.to_string());
        }
    }

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
        // Every length, odd and even, against `format!`.
        let v = 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210_u128;
        for n in 0..=40 {
            let mut out = vec![0u8; n];
            write_hex(&mut out, v);
            let want = format!("{v:040x}");
            assert_eq!(
                std::str::from_utf8(&out).unwrap(),
                &want[40 - n..],
                "{n} digits"
            );
        }
    }
}
