//! Chat uploads (ocs-api §5.6.2): multipart parsing, the size and type checks in OCS's order,
//! content sniffing, and where the bytes live (`DATA/ocs-files/<id>`). Metadata is in SQLite
//! (`ocs_files`); unattached uploads expire 24 h after upload and a periodic sweep removes
//! both the row and the bytes.

use std::path::{Path, PathBuf};

/// Per file and per request.
pub const MAX_BYTES: usize = 50 * 1024 * 1024;
/// Upload lifetime until attached to a message.
pub const EXPIRY_MS: i64 = 24 * 3600 * 1000;

const ALLOWED: &[&str] = &[
    ".txt", ".pdf", ".doc", ".docx", ".xls", ".xlsx", ".csv", ".jpg", ".jpeg", ".png", ".gif",
    ".webp", ".mp4", ".mov", ".avi", ".mp3", ".wav", ".html", ".htm", ".css", ".js", ".xml", ".md",
    ".ics", ".vcf", ".rtf", ".tsv", ".yaml", ".yml", ".py", ".c",
];
const BLOCKED_IMAGES: &[&str] = &[".svg", ".svgz", ".bmp", ".tif", ".tiff"];

/// One part of a multipart body.
#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    pub name: String,
    pub filename: Option<String>,
    pub content_type: Option<String>,
    pub data: Vec<u8>,
}

/// The boundary of a `multipart/form-data` content type.
pub fn boundary(content_type: &str) -> Option<String> {
    if !content_type
        .to_ascii_lowercase()
        .starts_with("multipart/form-data")
    {
        return None;
    }
    content_type.split(';').find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        k.eq_ignore_ascii_case("boundary")
            .then(|| v.trim_matches('"').to_string())
    })
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    (from..=hay.len() - needle.len()).find(|&i| &hay[i..i + needle.len()] == needle)
}

/// Split a multipart body into parts; `None` when malformed.
pub fn parse_multipart(body: &[u8], boundary: &str) -> Option<Vec<Part>> {
    let delim = format!("--{boundary}");
    let mut pos = find(body, delim.as_bytes(), 0)? + delim.len();
    let mut parts = Vec::new();
    loop {
        if body.get(pos..pos + 2) == Some(b"--") {
            return Some(parts);
        }
        if body.get(pos..pos + 2) == Some(b"\r\n") {
            pos += 2;
        }
        let head_end = find(body, b"\r\n\r\n", pos)?;
        let head = String::from_utf8_lossy(&body[pos..head_end]).into_owned();
        let data_start = head_end + 4;
        let next = find(body, format!("\r\n{delim}").as_bytes(), data_start)?;
        let mut part = Part {
            name: String::new(),
            filename: None,
            content_type: None,
            data: body[data_start..next].to_vec(),
        };
        for line in head.split("\r\n") {
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            if k.trim().eq_ignore_ascii_case("content-disposition") {
                for p in v.split(';').skip(1) {
                    if let Some((pk, pv)) = p.trim().split_once('=') {
                        let pv = pv.trim().trim_matches('"').to_string();
                        match pk.trim() {
                            "name" => part.name = pv,
                            "filename" => part.filename = Some(pv),
                            _ => {}
                        }
                    }
                }
            } else if k.trim().eq_ignore_ascii_case("content-type") {
                part.content_type = Some(v.trim().to_string());
            }
        }
        parts.push(part);
        pos = next + 2 + delim.len();
    }
}

fn ext_of(name: &str) -> String {
    match name.rfind('.') {
        Some(i) => name[i..].to_ascii_lowercase(),
        None => String::new(),
    }
}

/// Sniffed MIME type of the bytes, falling back to the name's extension.
pub fn sniff(data: &[u8], name: &str) -> String {
    let t = if data.starts_with(b"\x89PNG\r\n\x1a\n") {
        "image/png"
    } else if data.starts_with(&[0xFF, 0xD8, 0xFF]) {
        "image/jpeg"
    } else if data.starts_with(b"GIF87a") || data.starts_with(b"GIF89a") {
        "image/gif"
    } else if data.len() >= 12 && &data[..4] == b"RIFF" && &data[8..12] == b"WEBP" {
        "image/webp"
    } else if data.len() >= 12
        && &data[4..8] == b"ftyp"
        && matches!(&data[8..12], b"heic" | b"heix" | b"mif1" | b"msf1")
    {
        if &data[8..12] == b"mif1" {
            "image/heif"
        } else {
            "image/heic"
        }
    } else if data.starts_with(b"BM") && data.len() > 14 && ext_of(name) == ".bmp" {
        "image/bmp"
    } else if looks_like_svg(data) {
        "image/svg+xml"
    } else if data.starts_with(b"%PDF-") {
        "application/pdf"
    } else if data.starts_with(b"PK\x03\x04") {
        "application/zip"
    } else {
        return by_extension(name).to_string();
    };
    t.to_string()
}

fn looks_like_svg(data: &[u8]) -> bool {
    let head = String::from_utf8_lossy(&data[..data.len().min(1024)]).to_ascii_lowercase();
    let head = head.trim_start();
    head.starts_with("<svg") || (head.starts_with("<?xml") && head.contains("<svg"))
}

/// MIME type guessed from a file name (content served by name, as OCS does).
pub fn by_extension(name: &str) -> &'static str {
    match ext_of(name).as_str() {
        ".txt" => "text/plain",
        ".csv" => "text/csv",
        ".tsv" => "text/tab-separated-values",
        ".md" => "text/markdown",
        ".html" | ".htm" => "text/html",
        ".css" => "text/css",
        ".js" => "text/javascript",
        ".xml" => "application/xml",
        ".ics" => "text/calendar",
        ".vcf" => "text/vcard",
        ".rtf" => "application/rtf",
        ".yaml" | ".yml" => "application/yaml",
        ".py" => "text/x-python",
        ".c" => "text/x-c",
        ".json" => "application/json",
        ".pdf" => "application/pdf",
        ".doc" => "application/msword",
        ".docx" => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        ".xls" => "application/vnd.ms-excel",
        ".xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        ".jpg" | ".jpeg" => "image/jpeg",
        ".png" => "image/png",
        ".gif" => "image/gif",
        ".webp" => "image/webp",
        ".mp4" => "video/mp4",
        ".mov" => "video/quicktime",
        ".avi" => "video/x-msvideo",
        ".mp3" => "audio/mpeg",
        ".wav" => "audio/wav",
        ".zip" => "application/zip",
        _ => "application/octet-stream",
    }
}

/// The OCS checks of one file (in order); `Err` is the user-facing error text.
pub fn check_file(name: &str, claimed: Option<&str>, data: &[u8]) -> Result<String, String> {
    if data.len() > MAX_BYTES {
        return Err(format!("File '{name}' exceeds maximum size of 50MB"));
    }
    let ext = ext_of(name);
    let images = "Supported image types: GIF, HEIC, HEIF, JPEG, PNG, WEBP";
    if BLOCKED_IMAGES.contains(&ext.as_str()) {
        return Err(format!(
            "File `{name}` is an unsupported image type. {images}"
        ));
    }
    let claimed_text = claimed.is_some_and(|c| c.to_ascii_lowercase().starts_with("text/"));
    if !claimed_text && !ALLOWED.contains(&ext.as_str()) {
        let shown = if ext.is_empty() {
            name.to_string()
        } else {
            ext.clone()
        };
        return Err(format!(
            "File type '{shown}' is not supported. Allowed types: {}",
            ALLOWED.join(", ")
        ));
    }
    let sniffed = sniff(data, name);
    if sniffed.starts_with("image/")
        && !matches!(
            sniffed.as_str(),
            "image/png" | "image/jpeg" | "image/gif" | "image/webp" | "image/heic" | "image/heif"
        )
    {
        return Err(format!(
            "File `{name}` is an unsupported image type. {images}"
        ));
    }
    Ok(sniffed)
}

/// Where the bytes of file `id` live.
pub fn path_of(data_dir: &Path, id: i64) -> PathBuf {
    data_dir.join("ocs-files").join(id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_round_trip() {
        let body = b"--XX\r\nContent-Disposition: form-data; name=\"files\"; filename=\"a.txt\"\r\nContent-Type: text/plain\r\n\r\nhello\r\n--XX\r\nContent-Disposition: form-data; name=\"participant_name\"\r\n\r\nAda\r\n--XX--\r\n";
        let parts = parse_multipart(body, "XX").unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].filename.as_deref(), Some("a.txt"));
        assert_eq!(parts[0].data, b"hello");
        assert_eq!(parts[1].name, "participant_name");
        assert_eq!(
            boundary("multipart/form-data; boundary=\"XX\"").as_deref(),
            Some("XX")
        );
    }

    #[test]
    fn checks() {
        assert_eq!(
            check_file("a.txt", Some("text/plain"), b"hi").unwrap(),
            "text/plain"
        );
        assert!(
            check_file("image.bmp", None, b"BM")
                .unwrap_err()
                .contains("`image.bmp`")
        );
        assert!(check_file("x.svg", Some("text/plain"), b"<svg/>").is_err());
        assert!(check_file("photo.jpg", Some("image/jpeg"), b"<svg xmlns='x'></svg>").is_err());
        let e = check_file("data.zip", Some("application/zip"), b"PK\x03\x04").unwrap_err();
        assert!(e.contains(".txt, .pdf") && !e.contains(", t, "));
        assert_eq!(
            check_file("p.jpg", None, &[0xFF, 0xD8, 0xFF, 0xE0]).unwrap(),
            "image/jpeg"
        );
    }
}
