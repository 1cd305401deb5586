//! `X-Forwarded-For` as the server reads it (`haven_server::client_addr`): any bytes, split into
//! header lines at newlines, from a trusted and an untrusted peer. It must never panic, and the
//! address it returns is always a bucket: the peer's when the peer is untrusted, otherwise the
//! peer's or one that appears in the header.
#![no_main]

use std::net::IpAddr;

use haven_server::client_addr::{bucket, client_addr, parse_entry, TrustedProxies};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let trusted = TrustedProxies::new(vec![
        "10.0.0.0/8".parse().unwrap(),
        "fd00::/8".parse().unwrap(),
    ]);
    let lines: Vec<&[u8]> = data.split(|b| *b == b'\n').collect();
    let outsider: IpAddr = "203.0.113.9".parse().unwrap();
    assert_eq!(
        client_addr(outsider, lines.iter().copied(), &trusted),
        outsider
    );
    let proxy: IpAddr = "10.0.0.2".parse().unwrap();
    let got = client_addr(proxy, lines.iter().copied(), &trusted);
    let seen = got == proxy
        || lines.iter().any(|l| {
            std::str::from_utf8(l).is_ok_and(|l| {
                l.split(',')
                    .filter_map(parse_entry)
                    .any(|ip| bucket(ip) == got)
            })
        });
    assert!(seen, "{got} is neither the peer nor in the header");
    assert_eq!(bucket(got), got);
});
