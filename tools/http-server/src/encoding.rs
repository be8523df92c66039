//! Compressed request bodies (`Content-Encoding`). Log shippers compress what they send:
//! Vector's and Fluent Bit's HTTP outputs offer gzip and zstd, OpenTelemetry exporters
//! gzip. Logs compress five to ten times, so on a network link this is most of the
//! ingest bandwidth. `HttpMaxBodyBytes` bounds the body both as sent and as unpacked, so
//! a small compressed body cannot unpack into an unbounded one.

use crate::routes::Refusal;
use axum::http::{HeaderMap, StatusCode, header};
use serde_json::json;
use std::io::Read;

/// The encodings accepted, as `Accept-Encoding` lists them in a 415 answer (RFC 7694).
pub const ACCEPTED: &str = "gzip, zstd, deflate, identity";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    Identity,
    Gzip,
    /// HTTP's "deflate" is the zlib format (RFC 9110 §8.4.1.2).
    Deflate,
    Zstd,
}

impl Encoding {
    fn name(self) -> &'static str {
        match self {
            Encoding::Identity => "identity",
            Encoding::Gzip => "gzip",
            Encoding::Deflate => "deflate",
            Encoding::Zstd => "zstd",
        }
    }
}

/// The request's `Content-Encoding`; 415 for one this server cannot unpack.
pub fn of(headers: &HeaderMap) -> Result<Encoding, Refusal> {
    let Some(v) = headers.get(header::CONTENT_ENCODING) else {
        return Ok(Encoding::Identity);
    };
    let text = v.to_str().unwrap_or("").trim().to_ascii_lowercase();
    match text.as_str() {
        "" | "identity" => Ok(Encoding::Identity),
        "gzip" | "x-gzip" => Ok(Encoding::Gzip),
        "deflate" => Ok(Encoding::Deflate),
        "zstd" => Ok(Encoding::Zstd),
        _ => Err(Refusal::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            json!({"error": format!("Content-Encoding {text:?} is not supported; use one of {ACCEPTED}")}),
        )
        .accept_encoding()),
    }
}

/// Unpacks a body: 400 when it is not valid in its encoding, 413 when it unpacks to more
/// than `limit` bytes.
pub fn unpack(enc: Encoding, body: Vec<u8>, limit: usize) -> Result<Vec<u8>, Refusal> {
    let reader: Box<dyn Read + '_> = match enc {
        Encoding::Identity => return Ok(body),
        Encoding::Gzip => Box::new(flate2::read::MultiGzDecoder::new(&body[..])),
        Encoding::Deflate => Box::new(flate2::read::ZlibDecoder::new(&body[..])),
        Encoding::Zstd => {
            Box::new(zstd::stream::read::Decoder::new(&body[..]).map_err(|e| bad(enc, &e))?)
        }
    };
    let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(limit));
    reader
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| bad(enc, &e))?;
    if out.len() > limit {
        return Err(Refusal::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            json!({"error": format!("the {} body unpacks to more than HttpMaxBodyBytes ({limit} bytes)", enc.name())}),
        ));
    }
    Ok(out)
}

fn bad(enc: Encoding, e: &std::io::Error) -> Refusal {
    Refusal::new(
        StatusCode::BAD_REQUEST,
        json!({"error": format!("the body is not valid {}: {e}", enc.name())}),
    )
}
