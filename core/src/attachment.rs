//! Attachment checks: the type comes from the bytes (magic numbers) against an allow-list, a
//! declared type that disagrees is refused, file names are cleaned, and location metadata is
//! stripped from JPEG photos before anything is stored.

use serde::{Deserialize, Serialize};

use crate::error::ErrorCode;

/// Default largest upload, per site.
pub const DEFAULT_MAX_BYTES: usize = 10 * 1024 * 1024;

/// A type we accept, as detected from the content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Png,
    Jpeg,
    Gif,
    Webp,
    Pdf,
    Text,
    Csv,
    Zip,
    /// Office Open XML (docx, xlsx, pptx): a zip with a given extension.
    Docx,
    Xlsx,
    Pptx,
    /// Legacy Office (doc, xls, ppt): an OLE compound file.
    Doc,
    Xls,
    Ppt,
}

impl Kind {
    pub fn mime(self) -> &'static str {
        match self {
            Kind::Png => "image/png",
            Kind::Jpeg => "image/jpeg",
            Kind::Gif => "image/gif",
            Kind::Webp => "image/webp",
            Kind::Pdf => "application/pdf",
            Kind::Text => "text/plain",
            Kind::Csv => "text/csv",
            Kind::Zip => "application/zip",
            Kind::Docx => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            Kind::Xlsx => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            Kind::Pptx => {
                "application/vnd.openxmlformats-officedocument.presentationml.presentation"
            }
            Kind::Doc => "application/msword",
            Kind::Xls => "application/vnd.ms-excel",
            Kind::Ppt => "application/vnd.ms-powerpoint",
        }
    }

    /// Raster images that may be shown inline (thumbnails); everything else downloads.
    pub fn is_image(self) -> bool {
        matches!(self, Kind::Png | Kind::Jpeg | Kind::Gif | Kind::Webp)
    }

    fn extensions(self) -> &'static [&'static str] {
        match self {
            Kind::Png => &["png"],
            Kind::Jpeg => &["jpg", "jpeg"],
            Kind::Gif => &["gif"],
            Kind::Webp => &["webp"],
            Kind::Pdf => &["pdf"],
            Kind::Text => &["txt", "log", "md"],
            Kind::Csv => &["csv"],
            Kind::Zip => &["zip"],
            Kind::Docx => &["docx"],
            Kind::Xlsx => &["xlsx"],
            Kind::Pptx => &["pptx"],
            Kind::Doc => &["doc"],
            Kind::Xls => &["xls"],
            Kind::Ppt => &["ppt"],
        }
    }

    /// Content types a client may declare for this kind (browsers vary for text and office).
    fn accepts_declared(self, declared: &str) -> bool {
        let declared = declared
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if declared.is_empty() || declared == "application/octet-stream" {
            return true;
        }
        match self {
            // Browsers declare text files by extension (markdown, logs…): any text/* will do.
            Kind::Text => {
                declared.starts_with("text/")
                    && !matches!(
                        declared.as_str(),
                        "text/html" | "text/xml" | "text/javascript"
                    )
            }
            Kind::Csv => matches!(
                declared.as_str(),
                "text/csv" | "text/plain" | "application/vnd.ms-excel"
            ),
            Kind::Zip => matches!(
                declared.as_str(),
                "application/zip" | "application/x-zip-compressed"
            ),
            Kind::Jpeg => matches!(
                declared.as_str(),
                "image/jpeg" | "image/jpg" | "image/pjpeg"
            ),
            other => declared == other.mime(),
        }
    }
}

/// What an upload turned out to be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checked {
    pub kind: Kind,
    pub mime: String,
    pub name: String,
    pub image: bool,
}

fn starts(bytes: &[u8], magic: &[u8]) -> bool {
    bytes.len() >= magic.len() && &bytes[..magic.len()] == magic
}

/// Whether the bytes are text we are willing to store: UTF-8 without control characters other
/// than tab, line feed, carriage return and form feed, and nothing that looks like markup.
fn is_plain_text(bytes: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return false;
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r' | '\u{c}'))
    {
        return false;
    }
    // HTML or SVG dressed as text could be rendered by a careless viewer: refuse it.
    let head: String = text
        .chars()
        .take(1024)
        .collect::<String>()
        .to_ascii_lowercase();
    let head = head.trim_start();
    !(head.starts_with('<')
        && (head.contains("<html")
            || head.contains("<svg")
            || head.contains("<script")
            || head.starts_with("<!doctype")
            || head.starts_with("<?xml")))
}

/// Detects the kind of an upload from its first bytes; `ext` (from the file name) tells the
/// container formats apart (a docx is a zip; a csv is text).
pub fn sniff(bytes: &[u8], ext: &str) -> Option<Kind> {
    let ext = ext.to_ascii_lowercase();
    if starts(bytes, b"\x89PNG\r\n\x1a\n") {
        return Some(Kind::Png);
    }
    if starts(bytes, b"\xff\xd8\xff") {
        return Some(Kind::Jpeg);
    }
    if starts(bytes, b"GIF87a") || starts(bytes, b"GIF89a") {
        return Some(Kind::Gif);
    }
    if bytes.len() >= 12 && starts(bytes, b"RIFF") && &bytes[8..12] == b"WEBP" {
        return Some(Kind::Webp);
    }
    if starts(bytes, b"%PDF-") {
        return Some(Kind::Pdf);
    }
    if starts(bytes, b"PK\x03\x04") || starts(bytes, b"PK\x05\x06") {
        return Some(match ext.as_str() {
            "docx" => Kind::Docx,
            "xlsx" => Kind::Xlsx,
            "pptx" => Kind::Pptx,
            _ => Kind::Zip,
        });
    }
    if starts(bytes, b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1") {
        return match ext.as_str() {
            "doc" => Some(Kind::Doc),
            "xls" => Some(Kind::Xls),
            "ppt" => Some(Kind::Ppt),
            _ => None,
        };
    }
    if is_plain_text(bytes) {
        return Some(if ext == "csv" { Kind::Csv } else { Kind::Text });
    }
    None
}

/// Cleans a client-supplied file name: no paths, no control or bidirectional-override
/// characters, no leading dots, at most 120 characters, and an extension that matches `kind`.
pub fn clean_name(raw: &str, kind: Kind) -> String {
    let base = raw.rsplit(['/', '\\']).next().unwrap_or("");
    let mut name: String = base
        .chars()
        .filter(|c| !c.is_control())
        // Bidi controls and zero-width marks disguise extensions.
        .filter(|c| {
            !crate::protocol::is_bidi_override(*c) && !matches!(*c as u32, 0x200b..=0x200f | 0xfeff)
        })
        .map(|c| {
            if matches!(c, '<' | '>' | ':' | '"' | '|' | '?' | '*') {
                '_'
            } else {
                c
            }
        })
        .collect();
    name = name.trim().trim_start_matches('.').trim().to_string();
    let (stem, ext) = match name.rsplit_once('.') {
        Some((stem, ext)) => (stem.to_string(), ext.to_ascii_lowercase()),
        None => (name.clone(), String::new()),
    };
    let ext = if kind.extensions().contains(&ext.as_str()) {
        ext
    } else {
        kind.extensions()[0].to_string()
    };
    let stem: String = if stem.trim().is_empty() {
        "file".to_string()
    } else {
        stem
    };
    let stem: String = stem.chars().take(120 - ext.len() - 1).collect();
    format!("{stem}.{ext}")
}

/// Checks an upload: size, content type from the bytes, agreement with the declared type.
pub fn check(
    bytes: &[u8],
    declared_type: &str,
    raw_name: &str,
    max_bytes: usize,
) -> Result<Checked, ErrorCode> {
    if bytes.is_empty() {
        return Err(ErrorCode::EmptyFile);
    }
    if bytes.len() > max_bytes {
        return Err(ErrorCode::FileTooLarge);
    }
    let ext = raw_name.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
    let kind = sniff(bytes, ext).ok_or(ErrorCode::UnsupportedFileType)?;
    if !kind.accepts_declared(declared_type) {
        return Err(ErrorCode::FileTypeMismatch);
    }
    Ok(Checked {
        kind,
        mime: kind.mime().to_string(),
        name: clean_name(raw_name, kind),
        image: kind.is_image(),
    })
}

/// Removes APP1 segments (EXIF, with GPS position, and XMP) from a JPEG; image data is kept
/// byte for byte. Returns `None` if the file is not a well-formed JPEG.
pub fn strip_jpeg_metadata(bytes: &[u8]) -> Option<Vec<u8>> {
    if !starts(bytes, b"\xff\xd8") {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len());
    out.extend_from_slice(&bytes[..2]);
    let mut i = 2;
    loop {
        if i + 4 > bytes.len() || bytes[i] != 0xff {
            return None;
        }
        let marker = bytes[i + 1];
        // Start of scan: the rest is entropy-coded image data, copied as is.
        if marker == 0xda {
            out.extend_from_slice(&bytes[i..]);
            return Some(out);
        }
        // Markers without a length.
        if marker == 0xd8 || (0xd0..=0xd7).contains(&marker) || marker == 0x01 {
            out.extend_from_slice(&bytes[i..i + 2]);
            i += 2;
            continue;
        }
        let len = usize::from(u16::from_be_bytes([bytes[i + 2], bytes[i + 3]]));
        if len < 2 || i + 2 + len > bytes.len() {
            return None;
        }
        let segment = &bytes[i..i + 2 + len];
        if marker != 0xe1 {
            out.extend_from_slice(segment);
        }
        i += 2 + len;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";

    #[test]
    fn types_come_from_the_bytes() {
        assert_eq!(sniff(PNG, "png"), Some(Kind::Png));
        assert_eq!(sniff(b"\xff\xd8\xff\xe0", "jpg"), Some(Kind::Jpeg));
        assert_eq!(sniff(b"GIF89a....", "gif"), Some(Kind::Gif));
        assert_eq!(sniff(b"RIFF\0\0\0\0WEBPVP8 ", "webp"), Some(Kind::Webp));
        assert_eq!(sniff(b"%PDF-1.7\n", "pdf"), Some(Kind::Pdf));
        assert_eq!(sniff(b"PK\x03\x04rest", "docx"), Some(Kind::Docx));
        assert_eq!(sniff(b"PK\x03\x04rest", "bin"), Some(Kind::Zip));
        assert_eq!(sniff(b"name,qty\nA,1\n", "csv"), Some(Kind::Csv));
        assert_eq!(sniff("你好\n".as_bytes(), "txt"), Some(Kind::Text));
        assert_eq!(sniff(b"MZ\x90\0\x03\0", "exe"), None);
        assert_eq!(sniff(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "msi"), None);
    }

    #[test]
    fn markup_is_never_text() {
        assert_eq!(
            sniff(
                b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>",
                "svg"
            ),
            None
        );
        assert_eq!(
            sniff(b"<!DOCTYPE html><html><body>x</body></html>", "txt"),
            None
        );
        assert_eq!(sniff(b"  <html><script>alert(1)</script>", "png"), None);
        assert_eq!(sniff(b"<?xml version='1.0'?><svg/>", "txt"), None);
    }

    #[test]
    fn declared_type_must_agree() {
        assert_eq!(
            check(PNG, "image/png", "a.png", 100).map(|c| c.kind),
            Ok(Kind::Png)
        );
        assert_eq!(
            check(PNG, "image/jpeg", "a.png", 100),
            Err(ErrorCode::FileTypeMismatch)
        );
        assert_eq!(
            check(PNG, "text/html", "a.html", 100),
            Err(ErrorCode::FileTypeMismatch)
        );
        assert_eq!(
            check(
                b"<html><script>x</script></html>",
                "image/png",
                "a.png",
                100
            ),
            Err(ErrorCode::UnsupportedFileType)
        );
        assert_eq!(
            check(b"", "image/png", "a.png", 100),
            Err(ErrorCode::EmptyFile)
        );
        assert_eq!(
            check(PNG, "image/png", "a.png", 4),
            Err(ErrorCode::FileTooLarge)
        );
        // An unknown declared type is decided by the bytes alone.
        assert_eq!(
            check(PNG, "application/octet-stream", "shot", 100).map(|c| c.name),
            Ok("shot.png".to_string())
        );
    }

    #[test]
    fn names_are_cleaned() {
        assert_eq!(clean_name("../../etc/passwd", Kind::Text), "passwd.txt");
        assert_eq!(
            clean_name("C:\\Users\\me\\photo.JPG", Kind::Jpeg),
            "photo.jpg"
        );
        // "invoice<RLO>fdp.exe" shows as "invoiceexe.pdf" in a bidi renderer; the real type wins.
        assert_eq!(
            clean_name("invoice\u{202e}fdp.exe", Kind::Pdf),
            "invoicefdp.pdf"
        );
        assert_eq!(clean_name(".htaccess", Kind::Text), "htaccess.txt");
        assert_eq!(clean_name("", Kind::Png), "file.png");
        assert_eq!(clean_name("a<b>:c.png", Kind::Png), "a_b__c.png");
        assert!(clean_name(&"x".repeat(500), Kind::Pdf).chars().count() <= 120);
    }

    #[test]
    fn jpeg_metadata_is_stripped_and_image_data_kept() {
        let app0 = [0xff, 0xe0, 0x00, 0x06, b'J', b'F', b'I', b'F'];
        let exif = [0xff, 0xe1, 0x00, 0x08, b'E', b'x', b'i', b'f', 0x00, 0x00];
        let scan = [0xff, 0xda, 0x00, 0x04, 0x01, 0x02, 0x12, 0x34, 0xff, 0xd9];
        let mut jpeg = vec![0xff, 0xd8];
        jpeg.extend_from_slice(&app0);
        jpeg.extend_from_slice(&exif);
        jpeg.extend_from_slice(&scan);
        let stripped = strip_jpeg_metadata(&jpeg).unwrap();
        let mut expected = vec![0xff, 0xd8];
        expected.extend_from_slice(&app0);
        expected.extend_from_slice(&scan);
        assert_eq!(stripped, expected);
        assert_eq!(strip_jpeg_metadata(b"\xff\xd8\xff\xe1\xff\xff"), None);
        assert_eq!(strip_jpeg_metadata(PNG), None);
    }
}
