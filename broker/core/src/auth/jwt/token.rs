//! The compact JWS form (RFC 7515 §7.1) and its protected header, checked before any key is
//! looked at.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

use super::keys;

/// A JWT split and its header checked; signature not yet verified.
#[derive(Debug)]
pub struct ParsedToken<'a> {
    /// The header's `alg`: asymmetric, never `none` or HMAC.
    pub algorithm: Algorithm,
    /// The header's `kid`.
    pub kid: Option<String>,
    /// `header.payload`, what the signature covers.
    pub signing_input: &'a [u8],
    /// The decoded signature.
    pub signature: Vec<u8>,
    payload: &'a str,
}

fn decode_segment(name: &str, segment: &str) -> Result<Vec<u8>, String> {
    if segment.is_empty() {
        return Err(format!("the {name} is empty"));
    }
    URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| format!("the {name} is not unpadded base64url"))
}

/// Splits a compact JWS and checks its header. `max_len` is checked before anything else.
///
/// Refused: more or fewer than 3 segments (a JWE has 5), a header that is not a JSON object,
/// an `alg` that is missing, `none`, HMAC or unknown, a `crit` header (no extension is
/// understood), a nested JWT (`cty: JWT`), a `kid` that is not a string. `jku`, `jwk`, `x5u`
/// and `x5c` are ignored: keys come only from the configuration.
pub fn parse(token: &str, max_len: usize) -> Result<ParsedToken<'_>, String> {
    if token.len() > max_len {
        return Err(format!("the token is longer than {max_len} bytes"));
    }
    let segments: Vec<&str> = token.split('.').collect();
    let [header, payload, signature] = segments.as_slice() else {
        return Err(format!(
            "the token has {} dot-separated segments, not 3",
            segments.len()
        ));
    };
    let header_bytes = decode_segment("header", header)?;
    let header_json: Map<String, Value> =
        serde_json::from_slice(&header_bytes).map_err(|_| "the header is not a JSON object")?;
    if header_json.contains_key("crit") {
        return Err("the header has \"crit\"; no extension is supported".to_owned());
    }
    if header_json
        .get("cty")
        .and_then(Value::as_str)
        .is_some_and(|cty| cty.eq_ignore_ascii_case("JWT"))
    {
        return Err("nested JWTs (\"cty\": \"JWT\") are not accepted".to_owned());
    }
    let algorithm = match header_json.get("alg") {
        Some(Value::String(name)) => keys::parse_algorithm(name)?,
        Some(_) => return Err("the header's \"alg\" is not a string".to_owned()),
        None => return Err("the header has no \"alg\"".to_owned()),
    };
    let kid = match header_json.get("kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(_) => return Err("the header's \"kid\" is not a string".to_owned()),
    };
    let signature = decode_segment("signature", signature)?;
    if payload.is_empty() {
        return Err("the payload is empty".to_owned());
    }
    let signing_len = header.len() + 1 + payload.len();
    Ok(ParsedToken {
        algorithm,
        kid,
        signing_input: &token.as_bytes()[..signing_len],
        signature,
        payload,
    })
}

impl ParsedToken<'_> {
    /// The claims: the payload must be a JSON object. Call only once the signature verified.
    pub fn claims(&self) -> Result<Map<String, Value>, String> {
        let bytes = decode_segment("payload", self.payload)?;
        serde_json::from_slice(&bytes).map_err(|_| "the claims are not a JSON object".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn encode(value: &Value) -> String {
        URL_SAFE_NO_PAD.encode(value.to_string())
    }

    fn token(header: Value, claims: Value) -> String {
        format!("{}.{}.c2ln", encode(&header), encode(&claims))
    }

    fn refusal(token: &str) -> String {
        parse(token, 8192).unwrap_err()
    }

    #[test]
    fn a_good_header() {
        let text = token(
            json!({"alg": "ES256", "kid": "k1", "typ": "JWT", "jku": "https://evil.example/k", "x5u": "https://evil.example/c", "jwk": {"kty": "EC"}, "x5c": ["AAAA"]}),
            json!({"sub": "a"}),
        );
        let parsed = parse(&text, 8192).unwrap();
        assert_eq!(parsed.algorithm, Algorithm::ES256);
        assert_eq!(parsed.kid.as_deref(), Some("k1"));
        assert_eq!(parsed.signature, b"sig");
        let (input, _) = text.rsplit_once('.').unwrap();
        assert_eq!(parsed.signing_input, input.as_bytes());
        assert_eq!(parsed.claims().unwrap()["sub"], "a");
    }

    #[test]
    fn length_is_capped_before_decoding() {
        let text = token(json!({"alg": "RS256"}), json!({"pad": "x".repeat(9000)}));
        assert!(refusal(&text).contains("longer than 8192"));
        assert!(parse(&text, 20_000).is_ok());
    }

    #[test]
    fn exactly_three_segments() {
        let good = token(json!({"alg": "RS256"}), json!({}));
        assert!(refusal(&format!("{good}.x.y")).contains("5 dot-separated"));
        assert!(refusal("a.b").contains("2 dot-separated"));
        assert!(refusal("").contains("1 dot-separated"));
        let (input, _) = good.rsplit_once('.').unwrap();
        assert!(refusal(&format!("{input}.")).contains("signature is empty"));
        let header = good.split('.').next().unwrap();
        assert!(refusal(&format!("{header}..c2ln")).contains("payload is empty"));
        let padded_text = format!("{header}.e30=.c2ln");
        let padded = parse(&padded_text, 8192).unwrap();
        assert!(padded.claims().unwrap_err().contains("base64url"));
    }

    #[test]
    fn dangerous_headers_are_refused() {
        let claims = json!({"sub": "a"});
        for (header, expected) in [
            (json!({"alg": "none"}), "none"),
            (json!({"alg": "HS256"}), "symmetric"),
            (json!({"alg": "HS384"}), "symmetric"),
            (json!({"alg": "HS512"}), "symmetric"),
            (json!({"alg": "ES512"}), "not a supported"),
            (json!({"alg": 1}), "not a string"),
            (json!({"typ": "JWT"}), "no \"alg\""),
            (json!({"alg": "RS256", "crit": ["exp"], "exp": 1}), "crit"),
            (json!({"alg": "RS256", "crit": []}), "crit"),
            (json!({"alg": "RS256", "cty": "JWT"}), "nested"),
            (json!({"alg": "RS256", "cty": "jwt"}), "nested"),
            (json!({"alg": "RS256", "kid": 7}), "kid"),
        ] {
            let error = refusal(&token(header.clone(), claims.clone()));
            assert!(error.contains(expected), "{header}: {error}");
        }
        let not_object = format!("{}.{}.c2ln", encode(&json!(["RS256"])), encode(&claims));
        assert!(refusal(&not_object).contains("not a JSON object"));
        assert!(refusal("!!.e30.c2ln").contains("base64url"));
    }

    #[test]
    fn claims_must_be_an_object() {
        for claims in [json!(["sub"]), json!("sub"), json!(1)] {
            let text = token(json!({"alg": "RS256"}), claims);
            assert!(parse(&text, 8192).unwrap().claims().is_err());
        }
        let text = format!("{}.bm90IGpzb24.c2ln", encode(&json!({"alg": "RS256"})));
        assert!(parse(&text, 8192).unwrap().claims().is_err());
    }
}
