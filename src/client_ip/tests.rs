#[test]
fn addresses_as_display_writes_them() {
    for ip in [
        "0.0.0.0",
        "127.0.0.1",
        "10.20.100.255",
        "203.0.113.5",
        "::1",
        "2001:db8::7",
        "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        "::ffff:255.255.255.255",
    ] {
        let ip: std::net::IpAddr = ip.parse().unwrap();
        assert_eq!(super::AddressText::new(ip).as_str(), ip.to_string());
    }
}

use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn headers(name: &str, values: &[&str]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for v in values {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    map
}

fn resolve(peer: &str, h: &HeaderMap, t: &TrustedProxies) -> IpAddr {
    ClientIp::resolve(ip(peer), h, t).0
}

#[test]
fn without_trusted_proxies_headers_are_never_read() {
    let h = headers("x-forwarded-for", &["6.6.6.6"]);
    assert_eq!(
        resolve("203.0.113.1", &h, &TrustedProxies::none()),
        ip("203.0.113.1")
    );
    let f = headers("forwarded", &["for=6.6.6.6"]);
    assert_eq!(
        resolve("203.0.113.1", &f, &TrustedProxies::none()),
        ip("203.0.113.1")
    );
}

#[test]
fn an_untrusted_peer_cannot_choose_its_address() {
    let t = TrustedProxies::parse(["10.0.0.0/8"]).unwrap();
    let h = headers("x-forwarded-for", &["10.0.0.5"]);
    assert_eq!(resolve("198.51.100.2", &h, &t), ip("198.51.100.2"));
}

#[test]
fn the_leftmost_entry_is_ignored_and_the_rightmost_untrusted_wins() {
    let t = TrustedProxies::parse(["10.0.0.0/8"]).unwrap();
    let h = headers("x-forwarded-for", &["6.6.6.6, 203.0.113.7, 10.0.0.3"]);
    assert_eq!(resolve("10.0.0.2", &h, &t), ip("203.0.113.7"));
}

#[test]
fn several_hops_and_header_lines() {
    let t = TrustedProxies::parse(["10.0.0.0/8", "192.168.1.1"]).unwrap();
    let h = headers(
        "x-forwarded-for",
        &["6.6.6.6, 198.51.100.4", "192.168.1.1", "10.1.1.1"],
    );
    assert_eq!(resolve("10.0.0.2", &h, &t), ip("198.51.100.4"));
}

#[test]
fn all_trusted_gives_the_leftmost() {
    let t = TrustedProxies::parse(["10.0.0.0/8"]).unwrap();
    let h = headers("x-forwarded-for", &["10.9.9.9, 10.0.0.3"]);
    assert_eq!(resolve("10.0.0.2", &h, &t), ip("10.9.9.9"));
    assert_eq!(resolve("10.0.0.2", &HeaderMap::new(), &t), ip("10.0.0.2"));
}

#[test]
fn ports_are_stripped_and_mapped_ipv6_is_ipv4() {
    let t = TrustedProxies::parse(["10.0.0.0/8"]).unwrap();
    let h = headers("x-forwarded-for", &["203.0.113.7:5555"]);
    assert_eq!(resolve("10.0.0.2", &h, &t), ip("203.0.113.7"));
    let h = headers("x-forwarded-for", &["[2001:db8::7]:443"]);
    assert_eq!(resolve("10.0.0.2", &h, &t), ip("2001:db8::7"));
    let h = headers("x-forwarded-for", &["::ffff:203.0.113.9"]);
    assert_eq!(resolve("::ffff:10.0.0.2", &h, &t), ip("203.0.113.9"));
    assert_eq!(
        resolve(
            "::ffff:198.51.100.1",
            &HeaderMap::new(),
            &TrustedProxies::none()
        ),
        ip("198.51.100.1")
    );
}

#[test]
fn garbage_ends_the_walk_at_the_proxy_that_wrote_it() {
    let t = TrustedProxies::parse(["10.0.0.0/8"]).unwrap();
    // "unknown" written by the trusted proxy: the spoofed address left of it is not taken.
    let h = headers("x-forwarded-for", &["6.6.6.6, unknown"]);
    assert_eq!(resolve("10.0.0.2", &h, &t), ip("10.0.0.2"));
    let h = headers("x-forwarded-for", &["6.6.6.6, 10.0.0.9, not an ip"]);
    assert_eq!(resolve("10.0.0.2", &h, &t), ip("10.0.0.2"));
    let h = headers("x-forwarded-for", &["6.6.6.6, garbage, 10.0.0.9"]);
    assert_eq!(resolve("10.0.0.2", &h, &t), ip("10.0.0.9"));
    let h = headers("x-forwarded-for", &[""]);
    assert_eq!(resolve("10.0.0.2", &h, &t), ip("10.0.0.2"));
    let mut h = HeaderMap::new();
    h.insert(
        "x-forwarded-for",
        http::HeaderValue::from_bytes(b"\xff\xfe").unwrap(),
    );
    assert_eq!(resolve("10.0.0.2", &h, &t), ip("10.0.0.2"));
}

#[test]
fn forwarded_with_quoted_ipv6_ports_and_other_parameters() {
    let t = TrustedProxies::parse(["10.0.0.0/8"])
        .unwrap()
        .header(ForwardedHeader::Forwarded);
    let h = headers(
        "forwarded",
        &[r#"for=6.6.6.6, for="[2001:db8:cafe::17]:4711";proto=https;by=10.0.0.1"#],
    );
    assert_eq!(resolve("10.0.0.2", &h, &t), ip("2001:db8:cafe::17"));
    let h = headers("forwarded", &["For=\"198.51.100.17:80\"", "for=10.0.0.8"]);
    assert_eq!(resolve("10.0.0.2", &h, &t), ip("198.51.100.17"));
    // Obfuscated identifiers and elements without `for` end the walk.
    let h = headers("forwarded", &["for=6.6.6.6, for=_hidden"]);
    assert_eq!(resolve("10.0.0.2", &h, &t), ip("10.0.0.2"));
    let h = headers("forwarded", &["for=6.6.6.6, proto=https"]);
    assert_eq!(resolve("10.0.0.2", &h, &t), ip("10.0.0.2"));
    // X-Forwarded-For is not read when the proxies write Forwarded.
    let h = headers("x-forwarded-for", &["6.6.6.6"]);
    assert_eq!(resolve("10.0.0.2", &h, &t), ip("10.0.0.2"));
}

#[test]
fn a_unix_socket_peer_is_trusted_only_when_listed() {
    let h = headers("x-forwarded-for", &["6.6.6.6, 203.0.113.4"]);
    assert_eq!(ClientIp::resolve_unix(&h, &TrustedProxies::none()), None);
    let t = TrustedProxies::parse(["unix"]).unwrap();
    assert!(!t.is_empty());
    assert_eq!(
        ClientIp::resolve_unix(&h, &t),
        Some(ClientIp(ip("203.0.113.4")))
    );
    assert_eq!(ClientIp::resolve_unix(&HeaderMap::new(), &t), None);
}

#[test]
fn the_nearest_proxy_says_whether_it_was_https() {
    let xfp = |v: &[&str]| {
        forwarded_https(
            &headers("x-forwarded-proto", v),
            ForwardedHeader::XForwardedFor,
        )
    };
    assert!(xfp(&["https"]));
    assert!(xfp(&["http, HTTPS"]));
    assert!(!xfp(&["https, http"]));
    assert!(!xfp(&[]));
    let fwd = |v: &[&str]| forwarded_https(&headers("forwarded", v), ForwardedHeader::Forwarded);
    assert!(fwd(&["for=1.2.3.4;proto=https"]));
    assert!(fwd(&[
        "for=1.2.3.4;proto=http, for=5.6.7.8;Proto=\"https\""
    ]));
    assert!(!fwd(&["for=1.2.3.4;proto=https, for=5.6.7.8"]));
}

#[test]
fn mapped_ipv6_networks_match_ipv4_peers() {
    let t = TrustedProxies::parse(["::ffff:10.0.0.0/104"]).unwrap();
    assert!(t.contains(ip("10.1.2.3")));
    assert!(t.contains(ip("::ffff:10.1.2.3")));
    assert!(!t.contains(ip("11.0.0.1")));
}

#[test]
fn bad_entries_and_headers_are_config_errors() {
    assert!(TrustedProxies::parse(["10.0.0.0/33"]).is_err());
    assert!(TrustedProxies::parse(["example.com"]).is_err());
    assert_eq!(
        "Forwarded".parse::<ForwardedHeader>().unwrap(),
        ForwardedHeader::Forwarded
    );
    assert_eq!(
        "x-real-ip"
            .parse::<ForwardedHeader>()
            .unwrap_err()
            .to_string(),
        "invalid `forwarded_header`: expected `x-forwarded-for` or `forwarded`, got `x-real-ip`"
    );
}
