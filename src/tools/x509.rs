//! The little of X.509 the certificate tools need: validity dates and the
//! common names of subject and issuer, read straight from DER (a full
//! parser would be a large dependency for two fields). Anything that
//! does not have the expected shape is an error, never a panic.

/// What one certificate says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CertInfo {
    pub(crate) subject_cn: String,
    pub(crate) issuer_cn: String,
    /// Unix seconds.
    pub(crate) not_before: i64,
    pub(crate) not_after: i64,
}

/// One DER element: (tag, contents, rest after it).
fn element(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = b.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |a, &x| (a << 8) | usize::from(x));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// UTCTime `YYMMDDHHMMSSZ` (tag 0x17) or GeneralizedTime
/// `YYYYMMDDHHMMSSZ` (0x18) → Unix seconds.
fn time(tag: u8, v: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(v).ok()?.strip_suffix('Z')?;
    let (year, rest) = match tag {
        0x17 => {
            let yy: i64 = s.get(..2)?.parse().ok()?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, s.get(2..)?)
        }
        0x18 => (s.get(..4)?.parse().ok()?, s.get(4..)?),
        _ => return None,
    };
    if rest.len() < 10 || !rest.bytes().take(10).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = |i: usize| rest[i..i + 2].parse::<i64>().unwrap_or(0);
    Some(days_from_civil(year, n(0), n(2)) * 86_400 + n(4) * 3600 + n(6) * 60 + n(8))
}

/// The commonName (OID 2.5.4.3) of a Name, "" when it has none.
fn common_name(name: &[u8]) -> String {
    let mut sets = name;
    while let Some((_, set, rest)) = element(sets) {
        sets = rest;
        let mut atvs = set;
        while let Some((_, atv, more)) = element(atvs) {
            atvs = more;
            if let Some((0x06, oid, value)) = element(atv)
                && oid == [0x55, 0x04, 0x03]
                && let Some((_, v, _)) = element(value)
            {
                return String::from_utf8_lossy(v).into_owned();
            }
        }
    }
    String::new()
}

/// Reads a DER certificate.
pub(crate) fn parse(der: &[u8]) -> Result<CertInfo, String> {
    let bad = || "not an X.509 certificate (unexpected DER structure)".to_string();
    let (0x30, cert, _) = element(der).ok_or_else(bad)? else {
        return Err(bad());
    };
    let (0x30, tbs, _) = element(cert).ok_or_else(bad)? else {
        return Err(bad());
    };
    let mut rest = tbs;
    // [0] EXPLICIT version, only present from v2 on.
    if rest.first() == Some(&0xa0) {
        rest = element(rest).ok_or_else(bad)?.2;
    }
    let (_, _serial, r) = element(rest).ok_or_else(bad)?;
    let (_, _sig_alg, r) = element(r).ok_or_else(bad)?;
    let (_, issuer, r) = element(r).ok_or_else(bad)?;
    let (vtag, validity, r) = element(r).ok_or_else(bad)?;
    let (_, subject, _) = element(r).ok_or_else(bad)?;
    if vtag != 0x30 {
        return Err(bad());
    }
    let (t1, nb, vr) = element(validity).ok_or_else(bad)?;
    let (t2, na, _) = element(vr).ok_or_else(bad)?;
    Ok(CertInfo {
        subject_cn: common_name(subject),
        issuer_cn: common_name(issuer),
        not_before: time(t1, nb).ok_or_else(bad)?,
        not_after: time(t2, na).ok_or_else(bad)?,
    })
}

/// Every certificate of a PEM text or a single DER blob.
pub(crate) fn parse_file(bytes: &[u8]) -> Result<Vec<CertInfo>, String> {
    if bytes.first() == Some(&0x30) {
        return parse(bytes).map(|c| vec![c]);
    }
    let mut reader = std::io::BufReader::new(bytes);
    let ders: Vec<_> = rustls_pemfile::certs(&mut reader)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("bad PEM: {e}"))?;
    if ders.is_empty() {
        return Err(
            "no certificate in the file (expected PEM \"BEGIN CERTIFICATE\" or DER)".into(),
        );
    }
    ders.iter().map(|d| parse(d.as_ref())).collect()
}

/// A JSON row for one certificate, judged at `now` (Unix seconds).
pub(crate) fn row(c: &CertInfo, now: i64) -> serde_json::Value {
    let days_left = (c.not_after - now).div_euclid(86_400);
    serde_json::json!({
        "subject_cn": c.subject_cn,
        "issuer_cn": c.issuer_cn,
        "not_before_unix": c.not_before,
        "not_after_unix": c.not_after,
        "days_left": days_left,
        "expired": c.not_after <= now,
        "not_yet_valid": c.not_before > now,
    })
}

/// Now in Unix seconds.
pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_known_certificate_is_read() {
        let certs = parse_file(include_bytes!("fixtures/cert.pem")).expect("pem");
        assert_eq!(certs.len(), 1);
        let c = &certs[0];
        assert_eq!(c.subject_cn, "catpaw-test.example");
        assert_eq!(c.issuer_cn, "catpaw-test.example");
        // notBefore 2024-01-01T00:00:00Z, notAfter 2034-01-01T00:00:00Z
        assert_eq!(c.not_before, 1_704_067_200);
        assert_eq!(c.not_after, 2_019_686_400);
        let r = row(c, 2_019_686_400 - 10 * 86_400);
        assert_eq!(r["days_left"], 10);
        assert_eq!(r["expired"], false);
        assert_eq!(row(c, 2_019_686_401)["expired"], true);
    }

    #[test]
    fn dates_and_garbage() {
        assert_eq!(time(0x17, b"700101000000Z"), Some(0));
        assert_eq!(time(0x18, b"20000301000000Z"), Some(951_868_800));
        assert_eq!(time(0x17, b"49123123595 9Z"), None);
        assert_eq!(time(0x17, b"491231235959Z"), Some(2_524_607_999));
        for junk in [
            &b""[..],
            b"\x30",
            b"\x30\x85\xff\xff\xff\xff\xff",
            b"\x30\x03\x02\x01\x01",
        ] {
            assert!(parse(junk).is_err());
        }
        assert!(parse_file(b"hello").is_err());
    }
}
