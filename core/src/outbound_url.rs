//! Which URLs Parley may send requests to: the site's webhooks, its webhook bot, and the LLM and
//! translation providers it configured. The URL is read the way the runtime's `fetch` will read
//! it (the WHATWG URL standard), so the host checked is the host connected to: `\` ends the
//! host, a host ending in a number is an IPv4 address in any of its short forms (`127.1`,
//! `2130706433`, `0x7f.1`, `0177.0.0.1`), and an IPv6 address may carry an IPv4 one inside.
//! Whatever the standard would read differently from a plain reading (percent-encoded or
//! non-ASCII hosts, extra slashes, user info) is refused rather than interpreted.
//!
//! Host names are not resolved: a Worker cannot look a name up before it connects, so a public
//! name that resolves to a private address is beyond this check.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Longest URL accepted.
pub const MAX_URL_CHARS: usize = 2048;

/// Why a URL is refused; `code` is stable, for logs and delivery records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not `https` (nor `http` where private targets are allowed).
    Scheme,
    /// Too long, or spelled in a way a browser would read differently from its plain text.
    Malformed,
    /// Carries `user:password@`; `fetch` refuses such URLs anyway.
    UserInfo,
    /// The host is loopback, private, link-local or otherwise not a public address.
    NotPublic,
}

impl Refusal {
    /// Every reason, for the lists of codes that documentation and clients rely on.
    pub const ALL: [Refusal; 4] = [
        Refusal::Scheme,
        Refusal::Malformed,
        Refusal::UserInfo,
        Refusal::NotPublic,
    ];

    /// The reason whose [`code`](Refusal::code) is `code`, as read back from a stored record.
    pub fn from_code(code: &str) -> Option<Refusal> {
        Refusal::ALL.into_iter().find(|r| r.code() == code)
    }

    pub fn code(self) -> &'static str {
        match self {
            Refusal::Scheme => "scheme_not_allowed",
            Refusal::Malformed => "malformed_url",
            Refusal::UserInfo => "credentials_in_url",
            Refusal::NotPublic => "address_not_public",
        }
    }
}

/// A URL's host as a WHATWG parser reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// Lower case, without a trailing dot.
    Domain(String),
    V4(Ipv4Addr),
    V6(Ipv6Addr),
}

/// Whether `url` may be sent requests: `https` to a public host, or, when `allow_private`
/// (self-hosting on a private network, and tests), also `http` and private hosts.
pub fn check(url: &str, allow_private: bool) -> Result<Host, Refusal> {
    // Leading and trailing C0 controls and spaces are what the WHATWG parser strips.
    let url = url.trim_matches(|c: char| c <= ' ');
    if url.len() > MAX_URL_CHARS {
        return Err(Refusal::Malformed);
    }
    // Tabs and newlines inside are dropped by the parser (joining what surrounds them), and
    // `\` counts as `/` in http(s) URLs: either could move where the host ends.
    if url
        .chars()
        .any(|c| c.is_ascii_control() || c == ' ' || c == '\\')
    {
        return Err(Refusal::Malformed);
    }
    let rest = if let Some(rest) = strip_prefix_ignore_case(url, "https://") {
        rest
    } else if let Some(rest) = strip_prefix_ignore_case(url, "http://") {
        if !allow_private {
            return Err(Refusal::Scheme);
        }
        rest
    } else {
        return Err(Refusal::Scheme);
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    // `https:///host` is read as `https://host` by the parser; nobody writes it on purpose.
    if authority_end == 0 {
        return Err(Refusal::Malformed);
    }
    let authority = &rest[..authority_end];
    if authority.contains('@') {
        return Err(Refusal::UserInfo);
    }
    let (host_text, port) = split_port(authority)?;
    if !port_valid(port) {
        return Err(Refusal::Malformed);
    }
    let host = parse_host(host_text)?;
    if !allow_private && !is_public(&host) {
        return Err(Refusal::NotPublic);
    }
    Ok(host)
}

/// `scheme://host[:port]` of an http(s) URL that [`check`] accepts (with private hosts
/// allowed), as a WHATWG parser serialises its origin: the host as read, a default port left
/// out. Never its path, query or fragment, which may carry a token (the audit log keeps this).
pub fn origin(url: &str) -> Option<String> {
    let host = check(url, true).ok()?;
    let url = url.trim_matches(|c: char| c <= ' ');
    let (scheme, rest, default_port) = match strip_prefix_ignore_case(url, "https://") {
        Some(rest) => ("https", rest, 443),
        None => ("http", strip_prefix_ignore_case(url, "http://")?, 80),
    };
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let (_, port) = split_port(authority).ok()?;
    let host = match host {
        Host::Domain(name) => name,
        Host::V4(ip) => ip.to_string(),
        Host::V6(ip) => format!("[{ip}]"),
    };
    Some(match port.parse::<u32>() {
        Ok(port) if port != default_port => format!("{scheme}://{host}:{port}"),
        _ => format!("{scheme}://{host}"),
    })
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

/// `host[:port]` or `[v6][:port]`; the port may be empty, as the standard allows.
fn split_port(authority: &str) -> Result<(&str, &str), Refusal> {
    if authority.starts_with('[') {
        let close = authority.find(']').ok_or(Refusal::Malformed)?;
        let (host, after) = authority.split_at(close + 1);
        return match after.strip_prefix(':') {
            Some(port) => Ok((host, port)),
            None if after.is_empty() => Ok((host, "")),
            None => Err(Refusal::Malformed),
        };
    }
    // The first `:` ends the host (`a:1:2` is host `a` with a bad port, not host `a:1`).
    Ok(authority.split_once(':').unwrap_or((authority, "")))
}

fn port_valid(port: &str) -> bool {
    port.bytes().all(|b| b.is_ascii_digit())
        && port
            .bytes()
            .try_fold(0u32, |n, b| {
                let n = n * 10 + u32::from(b - b'0');
                (n <= 65_535).then_some(n)
            })
            .is_some()
}

/// The host the way the WHATWG host parser reads it, for the hosts this module accepts at all:
/// a bracketed IPv6 address, a dotted name of ASCII letters, digits, `-` and `_`, or, when the
/// last label is a number, an IPv4 address.
pub fn parse_host(text: &str) -> Result<Host, Refusal> {
    if let Some(inside) = text.strip_prefix('[') {
        let inside = inside.strip_suffix(']').ok_or(Refusal::Malformed)?;
        return inside
            .parse::<Ipv6Addr>()
            .map(Host::V6)
            .map_err(|_| Refusal::Malformed);
    }
    // The parser percent-decodes and maps Unicode (full-width digits, ideographic full stops)
    // before it looks at the host: refusing both keeps the host what it appears to be.
    // Internationalised names work in their Punycode form (`xn--…`).
    let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_');
    if text.is_empty() || !text.bytes().all(allowed) {
        return Err(Refusal::Malformed);
    }
    let lower = text.to_ascii_lowercase();
    if ends_in_number(&lower) {
        return parse_ipv4(&lower).map(Host::V4).ok_or(Refusal::Malformed);
    }
    let name = lower.strip_suffix('.').unwrap_or(&lower);
    if name.is_empty() || name.split('.').any(str::is_empty) {
        return Err(Refusal::Malformed);
    }
    Ok(Host::Domain(name.to_string()))
}

/// The standard's "ends in a number" test: is the last label (ignoring one trailing dot) a
/// decimal number or something the IPv4 number parser takes, such as `0x7f`?
fn ends_in_number(host: &str) -> bool {
    let mut labels: Vec<&str> = host.split('.').collect();
    if labels.last() == Some(&"") {
        if labels.len() == 1 {
            return false;
        }
        labels.pop();
    }
    let last = labels.last().copied().unwrap_or_default();
    (!last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()))
        || parse_ipv4_number(last).is_some()
}

/// The standard's IPv4 parser: one to four dot-separated numbers, each decimal, octal (leading
/// `0`) or hexadecimal (`0x`); all but the last are one byte each, the last fills the rest.
pub fn parse_ipv4(host: &str) -> Option<Ipv4Addr> {
    let mut parts: Vec<&str> = host.split('.').collect();
    if parts.len() > 1 && parts.last() == Some(&"") {
        parts.pop();
    }
    if parts.len() > 4 {
        return None;
    }
    let numbers = parts
        .iter()
        .map(|p| parse_ipv4_number(p))
        .collect::<Option<Vec<u64>>>()?;
    let (last, leading) = numbers.split_last()?;
    if leading.iter().any(|&n| n > 255) {
        return None;
    }
    // The last number covers the bytes the leading ones leave: 4, 3, 2 or 1 of them.
    let last_bytes = 4 - leading.len() as u32;
    if *last >= 1u64 << (8 * last_bytes) {
        return None;
    }
    let address = leading
        .iter()
        .enumerate()
        .fold(*last, |acc, (i, &n)| acc + (n << (8 * (3 - i as u32))));
    u32::try_from(address).ok().map(Ipv4Addr::from)
}

/// One part of an IPv4 address: `0x`/`0X` hexadecimal, `0` octal, otherwise decimal; `0x`
/// alone is zero. `None` when it is not a number.
fn parse_ipv4_number(part: &str) -> Option<u64> {
    if part.is_empty() {
        return None;
    }
    let (digits, radix) = if part.len() >= 2 && (part.starts_with("0x") || part.starts_with("0X")) {
        (&part[2..], 16)
    } else if part.len() >= 2 && part.starts_with('0') {
        (&part[1..], 8)
    } else {
        (part, 10)
    };
    // Saturating: a number too large for any address is still a number (so the host "ends in a
    // number"), and fails the parser's range checks.
    digits.chars().try_fold(0u64, |n, c| {
        let digit = u64::from(c.to_digit(radix)?);
        Some(n.saturating_mul(u64::from(radix)).saturating_add(digit))
    })
}

/// Whether a host may be reached from a public deployment: not a local name, and no address
/// the IANA special-purpose registries mark as not globally reachable.
pub fn is_public(host: &Host) -> bool {
    match host {
        Host::Domain(name) => is_public_name(name),
        Host::V4(ip) => is_public_v4(*ip),
        Host::V6(ip) => is_public_v6(*ip),
    }
}

fn is_public_name(name: &str) -> bool {
    const LOCAL_SUFFIXES: [&str; 4] = ["localhost", "local", "internal", "home.arpa"];
    let local = LOCAL_SUFFIXES.iter().any(|suffix| {
        name == *suffix
            || name
                .strip_suffix(suffix)
                .is_some_and(|head| head.ends_with('.'))
    });
    // A name without a dot is completed by the local resolver's search list, if at all.
    !local && name.contains('.')
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    let not_public = a == 0 // "this network"
        || a == 10
        || a == 127
        || (a == 100 && (64..128).contains(&b)) // shared address space (carrier NAT)
        || (a == 169 && b == 254)
        || (a == 172 && (16..32).contains(&b))
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2) // documentation
        || (a == 192 && b == 88 && c == 99) // 6to4 relays
        || (a == 192 && b == 168)
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || (a == 198 && b == 51 && c == 100) // documentation
        || (a == 203 && b == 0 && c == 113) // documentation
        || a >= 224; // multicast, reserved, broadcast
    !not_public
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    let embedded_v4 = || Ipv4Addr::from((u32::from(s[6]) << 16) | u32::from(s[7]));
    match s {
        // ::, ::1 and the deprecated IPv4-compatible ::a.b.c.d: nothing public lives there.
        [0, 0, 0, 0, 0, 0, _, _] => false,
        // IPv4-mapped ::ffff:a.b.c.d and IPv4-translated ::ffff:0:a.b.c.d reach the IPv4 address.
        [0, 0, 0, 0, 0, 0xffff, _, _] | [0, 0, 0, 0, 0xffff, 0, _, _] => {
            is_public_v4(embedded_v4())
        }
        // NAT64 64:ff9b::a.b.c.d reaches the IPv4 address; the local-use 64:ff9b:1::/48 is local.
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => is_public_v4(embedded_v4()),
        [0x64, 0xff9b, 1, ..] => false,
        // Discard-only 100::/64.
        [0x100, 0, 0, 0, ..] => false,
        // 6to4 2002:a.b.c.d::/48 is relayed to the IPv4 address in its second and third groups.
        [0x2002, hi, lo, ..] => is_public_v4(Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo))),
        [first, second, ..] => {
            let ietf_protocols = first == 0x2001 && second < 0x200; // 2001::/23, Teredo included
            let documentation =
                (first == 0x2001 && second == 0xdb8) || (first == 0x3fff && second < 0x1000);
            let srv6 = first == 0x5f00;
            let unique_local = (first & 0xfe00) == 0xfc00;
            // Link-local fe80::/10 and the deprecated site-local fec0::/10.
            let link_or_site_local = (first & 0xff80) == 0xfe80;
            let multicast = (first & 0xff00) == 0xff00;
            !(ietf_protocols
                || documentation
                || srv6
                || unique_local
                || link_or_site_local
                || multicast)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn public(url: &str) -> bool {
        check(url, false).is_ok()
    }

    fn refused_as(url: &str, why: Refusal) {
        assert_eq!(check(url, false).err(), Some(why), "{url:?}");
    }

    #[test]
    fn a_refusal_reads_back_from_its_code() {
        for refusal in Refusal::ALL {
            assert_eq!(Refusal::from_code(refusal.code()), Some(refusal));
        }
        assert_eq!(
            Refusal::from_code("address_not_public"),
            Some(Refusal::NotPublic)
        );
        assert_eq!(Refusal::from_code("Address_Not_Public"), None);
        assert_eq!(Refusal::from_code(""), None);
    }

    #[test]
    fn public_hosts_are_allowed() {
        for url in [
            "https://hooks.example.com/x",
            "https://93.184.216.34/",
            "https://[2606:4700::1111]/",
            "HTTPS://Hooks.Example.COM/x",
            "https://hooks.example.com.:8443/x?notify=ops@example.com#a@b",
            "https://hooks.example.com:/x",
            "https://xn--bcher-kva.example/",
            "https://api.example.com",
            "  https://hooks.example.com/x\n",
            "https://8.8.8.8:443/dns",
            "https://[2a00:1450:4001:82b::200e]:8443/",
            "https://[64:ff9b::8.8.8.8]/",
            "https://[2002:808:808::1]/",
        ] {
            assert!(public(url), "{url:?}");
        }
        assert_eq!(
            check("https://Hooks.Example.COM./x", false),
            Ok(Host::Domain("hooks.example.com".into()))
        );
    }

    #[test]
    fn only_https_unless_private_targets_are_allowed() {
        refused_as("http://hooks.example.com/x", Refusal::Scheme);
        refused_as("ftp://hooks.example.com/x", Refusal::Scheme);
        refused_as("javascript:alert(1)", Refusal::Scheme);
        refused_as("https:hooks.example.com/x", Refusal::Scheme);
        refused_as("https:/hooks.example.com/x", Refusal::Scheme);
        assert_eq!(
            check("javascript:alert(1)", true).err(),
            Some(Refusal::Scheme)
        );
        assert!(check("HTTP://hooks.example.com/x", true).is_ok());
    }

    #[test]
    fn a_backslash_is_refused_since_browsers_read_it_as_a_slash() {
        refused_as("https://127.0.0.1\\.example.com/", Refusal::Malformed);
        refused_as("https://hooks.example.com\\@127.0.0.1/", Refusal::Malformed);
        refused_as("https://hooks.example.com/a\\b", Refusal::Malformed);
        assert!(check("http://127.0.0.1\\.example.com/", true).is_err());
    }

    #[test]
    fn short_and_numeric_ipv4_forms_are_read_as_addresses() {
        for (host, ip) in [
            ("2130706433", [127, 0, 0, 1]),
            ("127.1", [127, 0, 0, 1]),
            ("127.0.1", [127, 0, 0, 1]),
            ("0x7f.1", [127, 0, 0, 1]),
            ("0X7F.0.0.1", [127, 0, 0, 1]),
            ("0177.0.0.1", [127, 0, 0, 1]),
            ("017700000001", [127, 0, 0, 1]),
            ("0x7f000001", [127, 0, 0, 1]),
            ("127.0.0.1.", [127, 0, 0, 1]),
            ("0xa9fea9fe", [169, 254, 169, 254]),
            ("2852039166", [169, 254, 169, 254]),
            ("169.254.43518", [169, 254, 169, 254]),
            ("0", [0, 0, 0, 0]),
            ("0x", [0, 0, 0, 0]),
            ("10.0x0.00.1", [10, 0, 0, 1]),
        ] {
            assert_eq!(parse_host(host), Ok(Host::V4(Ipv4Addr::from(ip))), "{host}");
            refused_as(&format!("https://{host}/x"), Refusal::NotPublic);
        }
        assert_eq!(
            parse_host("1.0x10000"),
            Ok(Host::V4(Ipv4Addr::new(1, 1, 0, 0)))
        );
        assert!(public("https://1558767650/")); // 92.232.28.34 written as one number
    }

    #[test]
    fn a_host_ending_in_a_number_that_is_no_ipv4_address_is_refused() {
        for host in [
            "1.2.3.4.5",
            "256.1.1.1",
            "1.2.3.256",
            "1.2.65536",
            "1.16777216",
            "4294967296",
            "0x100000000",
            "99999999999999999999999",
            "08.1.1.1",
            "0x7g.1",
            "1..1",
            "example.09",
            "example.0x1",
            "hooks.example.com.1",
            "1.2.3.4..",
        ] {
            assert_eq!(parse_host(host), Err(Refusal::Malformed), "{host}");
            assert!(check(&format!("https://{host}/"), true).is_err(), "{host}");
        }
        // A number elsewhere than the last label is part of a name.
        assert_eq!(
            parse_host("0x7f.1.example"),
            Ok(Host::Domain("0x7f.1.example".into()))
        );
    }

    #[test]
    fn private_ipv4_ranges_are_refused() {
        for ip in [
            "0.1.2.3",
            "10.1.2.3",
            "100.64.0.1",
            "100.127.255.255",
            "127.8.8.8",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.0.2.10",
            "192.88.99.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
        ] {
            refused_as(&format!("https://{ip}/x"), Refusal::NotPublic);
        }
        for ip in [
            "100.63.255.255",
            "100.128.0.1",
            "172.15.0.1",
            "172.32.0.1",
            "1.1.1.1",
        ] {
            assert!(public(&format!("https://{ip}/x")), "{ip}");
        }
    }

    #[test]
    fn ipv6_addresses_and_the_ipv4_inside_them_are_checked() {
        for host in [
            "::",
            "::1",
            "0:0:0:0:0:0:0:1",
            "::ffff:127.0.0.1",
            "::FFFF:127.0.0.1",
            "::ffff:7f00:1",
            "::ffff:a9fe:a9fe",
            "::ffff:10.0.0.1",
            "::ffff:0:7f00:1",
            "::127.0.0.1",
            "::8.8.8.8",
            "64:ff9b::127.0.0.1",
            "64:ff9b::a00:1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::8.8.8.8",
            "2002:7f00:1::",
            "2002:c0a8:101::1",
            "100::1",
            "2001::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "2001:db8::1",
            "3fff::1",
            "3fff:fff::1",
            "5f00::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "ff02::1",
            "ff0e::1",
        ] {
            refused_as(&format!("https://[{host}]/x"), Refusal::NotPublic);
        }
        for host in [
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "3fff:1000::1",
            "2001:4860::8888",
        ] {
            assert!(public(&format!("https://[{host}]:443/x")), "{host}");
        }
        for url in [
            "https://[fe80::1%25eth0]/",
            "https://[::1/",
            "https://[2606:4700::1111]x/",
            "https://[2606:4700::1111]:x/",
            "https://[127.0.0.1]/",
            "https://[::ffff:127.0.0.01]/",
            "https://[1:2:3:4:5:6:7:8:9]/",
        ] {
            refused_as(url, Refusal::Malformed);
        }
    }

    #[test]
    fn encoded_unicode_and_local_names_are_refused() {
        for url in [
            "https://%31%32%37.0.0.1/",
            "https://127.0.0.1%2e/",
            "https://hooks%2eexample.com/",
            "https://１２７.０.０.１/",
            "https://127。0。0。1/",
            "https://loca\u{00AD}lhost/",
            "https://bücher.example/",
            "https://hooks..example.com/",
            "https://./",
            "https://hooks.example.com!/",
        ] {
            refused_as(url, Refusal::Malformed);
        }
        for url in [
            "https://localhost/",
            "https://LOCALHOST:8443/",
            "https://localhost./",
            "https://LocalHost./x",
            "https://api.localhost/",
            "https://api.localhost./",
            "https://printer.local/",
            "https://metadata.google.internal/",
            "https://metadata.google.internal./",
            "https://router.home.arpa/",
            "https://intranet/",
            "https://intranet./",
        ] {
            refused_as(url, Refusal::NotPublic);
        }
        // Only whole labels count.
        assert!(public("https://notlocalhost.example/"));
        assert!(public("https://mylocal.example/"));
    }

    #[test]
    fn the_host_after_user_info_would_count_so_user_info_is_refused() {
        for url in [
            "https://a@127.0.0.1/",
            "https://hooks.example.com@127.0.0.1/",
            "https://a:b@hooks.example.com/",
            "https://a@b@127.0.0.1/",
            "https://@hooks.example.com/",
        ] {
            refused_as(url, Refusal::UserInfo);
            assert_eq!(check(url, true).err(), Some(Refusal::UserInfo), "{url}");
        }
    }

    #[test]
    fn anything_the_parser_would_rejoin_or_skip_is_refused() {
        for url in [
            "https:///127.0.0.1/",
            "https:////hooks.example.com/",
            "https://127.0.0.\t1/",
            "https://1\n27.0.0.1/",
            "https://hooks.example.com/a b",
            "https://hooks.example.com\r/",
            "https://hooks.example.com:99999/",
            "https://hooks.example.com:1:2/",
            "https://hooks.example.com:8o/",
            "https://:443/",
            "https://",
        ] {
            assert!(check(url, true).is_err(), "{url:?}");
            assert!(!public(url), "{url:?}");
        }
        let long = format!("https://hooks.example.com/{}", "a".repeat(MAX_URL_CHARS));
        refused_as(&long, Refusal::Malformed);
    }

    #[test]
    fn private_targets_when_allowed() {
        for url in [
            "http://127.0.0.1:9000/hook",
            "http://localhost:8787/x",
            "https://10.0.0.1/",
            "http://[::1]:9000/",
            "http://intranet/",
            "http://127.1:9000/",
        ] {
            assert!(check(url, true).is_ok(), "{url}");
            assert!(!public(url), "{url}");
        }
    }

    #[test]
    fn refusals_have_stable_codes() {
        let codes = [
            Refusal::Scheme,
            Refusal::Malformed,
            Refusal::UserInfo,
            Refusal::NotPublic,
        ]
        .map(Refusal::code);
        assert_eq!(
            codes,
            [
                "scheme_not_allowed",
                "malformed_url",
                "credentials_in_url",
                "address_not_public"
            ]
        );
    }

    /// `ip` written the ways the IPv4 parser accepts: `parts` numbers (1 to 4), each in decimal,
    /// octal or hexadecimal as `radixes` says, with or without a trailing dot.
    fn written(
        ip: Ipv4Addr,
        parts: usize,
        radixes: &[u8],
        upper: bool,
        trailing_dot: bool,
    ) -> String {
        let value = u32::from(ip);
        let bytes = ip.octets();
        // The leading parts are single bytes; the last one carries the bytes that remain.
        let mut numbers: Vec<u64> = bytes[..parts - 1].iter().map(|&b| u64::from(b)).collect();
        let last_bytes = 5 - parts;
        let mask = if last_bytes == 4 {
            u64::from(u32::MAX)
        } else {
            (1u64 << (8 * last_bytes)) - 1
        };
        numbers.push(u64::from(value) & mask);
        let text: Vec<String> = numbers
            .iter()
            .zip(radixes)
            .map(|(&n, radix)| match radix {
                0 => n.to_string(),
                1 => format!("0{n:o}"),
                _ if upper => format!("0X{n:X}"),
                _ => format!("0x{n:x}"),
            })
            .collect();
        let mut host = text.join(".");
        if trailing_dot {
            host.push('.');
        }
        host
    }

    fn private_v4() -> impl Strategy<Value = Ipv4Addr> {
        prop_oneof![
            any::<u32>().prop_map(|n| Ipv4Addr::from(0x7f00_0000 | (n & 0x00ff_ffff))),
            any::<u32>().prop_map(|n| Ipv4Addr::from(0x0a00_0000 | (n & 0x00ff_ffff))),
            any::<u32>().prop_map(|n| Ipv4Addr::from(0xa9fe_0000 | (n & 0xffff))),
            any::<u32>().prop_map(|n| Ipv4Addr::from(0xc0a8_0000 | (n & 0xffff))),
            any::<u32>().prop_map(|n| Ipv4Addr::from(0xac10_0000 | (n & 0x000f_ffff))),
            any::<u32>().prop_map(|n| Ipv4Addr::from(n & 0x00ff_ffff)),
        ]
    }

    proptest! {
        #[test]
        fn every_ipv4_spelling_reads_back_as_its_address(
            ip in any::<u32>().prop_map(Ipv4Addr::from),
            parts in 1usize..=4,
            radixes in prop::collection::vec(0u8..3, 4),
            upper: bool,
            trailing_dot: bool,
        ) {
            let host = written(ip, parts, &radixes, upper, trailing_dot);
            prop_assert_eq!(parse_host(&host), Ok(Host::V4(ip)), "{}", host);
            let url = format!("https://{host}:443/hook");
            prop_assert_eq!(public(&url), is_public_v4(ip), "{}", url);
        }

        #[test]
        fn private_ipv4_is_refused_however_written(
            ip in private_v4(),
            parts in 1usize..=4,
            radixes in prop::collection::vec(0u8..3, 4),
            upper: bool,
            trailing_dot: bool,
        ) {
            let host = written(ip, parts, &radixes, upper, trailing_dot);
            prop_assert_eq!(check(&format!("https://{host}/"), false), Err(Refusal::NotPublic));
            let [a, b, c, d] = ip.octets();
            let (hi, lo) = ((u16::from(a) << 8) | u16::from(b), (u16::from(c) << 8) | u16::from(d));
            for v6 in [
                format!("::ffff:{ip}"),
                format!("::ffff:{hi:x}:{lo:x}"),
                format!("::{ip}"),
                format!("64:ff9b::{ip}"),
                format!("2002:{hi:x}:{lo:x}::1"),
            ] {
                prop_assert_eq!(check(&format!("https://[{v6}]/"), false), Err(Refusal::NotPublic), "{}", v6);
            }
        }

        #[test]
        fn the_check_never_panics(text in "\\PC{0,60}", prefix in prop::sample::select(vec!["", "https://", "http://", "https://[", "https://0x"])) {
            let url = format!("{prefix}{text}");
            let _ = check(&url, false);
            let _ = check(&url, true);
        }

        #[test]
        fn an_allowed_url_names_its_host_plainly(text in "[a-z0-9.:@\\[\\]%/\\\\?#-]{0,30}") {
            let url = format!("https://{text}");
            if public(&url) {
                let authority = text.split(['/', '?', '#']).next().unwrap_or_default();
                prop_assert!(!url.contains('\\') && !authority.contains('@') && !authority.contains('%'), "{}", url);
            }
        }
    }

    #[test]
    fn an_origin_is_scheme_host_and_port_only() {
        assert_eq!(
            origin("https://Hooks.Example.com/parley/abc?token=s3cret#x").as_deref(),
            Some("https://hooks.example.com")
        );
        assert_eq!(
            origin("http://127.0.0.1:9000/hooks?key=1").as_deref(),
            Some("http://127.0.0.1:9000")
        );
        assert_eq!(
            origin("https://0x7f.1:0443/x").as_deref(),
            Some("https://127.0.0.1")
        );
        assert_eq!(
            origin("HTTPS://[::1]:8443").as_deref(),
            Some("https://[::1]:8443")
        );
        assert_eq!(origin("https://user:pw@example.com/"), None);
        assert_eq!(origin("not a url"), None);
    }
}
