//! Chat uploads (ocs-api §5.6.2): the multipart body read as it streams, the size and type
//! checks in OCS's order, content sniffing. Rows and bytes are in the database (`ocs_files`,
//! `ocs_file_content`: every node of a cluster serves every file); unattached uploads expire
//! 24 h after upload and a periodic sweep removes the row, and the bytes with it.
//!
//! Receiving ([`receive`]) is built for hostile bodies:
//! * multer parses the body as it arrives, in pieces of at most [`PIECE`] bytes, and gets the
//!   next piece only after it has looked at the last one. multer looks for a delimiter (the
//!   first boundary, the end of a part's headers) in everything it holds each time it gets
//!   more, so its buffer is kept small: more than [`STALL_BYTES`] fed without a part or part
//!   data coming out is a malformed body (real preambles and part headers are far smaller).
//!   Together with the RFC 2046 boundary of at most 70 characters ([`boundary_ok`]), every
//!   byte is looked at a bounded number of times: a 100 MB body costs what copying it costs.
//! * the request is cut at [`MAX_REQUEST`] bytes as they arrive (413), and when no byte comes
//!   for the body idle deadline (408);
//! * file bytes go to a spool file under `DATA/ocs-files/incoming/` (written in batches on the
//!   blocking pool, never on an async worker), so memory per upload is a few pieces whatever
//!   the file size while the body arrives (and before its checks); once the upload can no
//!   longer pass the size rules, bytes are only counted. Only an upload that passed its checks
//!   is read back ([`ReceivedFile::content`]) to go into the database, within a bound of
//!   bytes held at once by all uploads ([`hold_content`]);
//! * at most [`MAX_FILES`] files and the first [`FIELD_BYTES`] of each form field are kept.
//!
//! The answers stay OCS's: the whole body is read (up to [`MAX_REQUEST`]) before the checks
//! run in OCS's order ([`check_upload`]), so a malformed part after a bad file still answers
//! "Malformed multipart body", and a client that sends a body only after reading an answer
//! gets it.

use bytes::Bytes;
use futures_core::Stream;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

/// Per file and per request.
pub const MAX_BYTES: usize = 50 * 1024 * 1024;
/// Largest request body of an upload: room for 2 × 50 MB, so that the total-size rule
/// answers 400 rather than 413.
pub const MAX_REQUEST: u64 = 2 * MAX_BYTES as u64 + 1024 * 1024;
/// Files per upload (ours: OCS sets no number; each file is a row and a file on disk).
pub const MAX_FILES: usize = 100;
/// Bytes kept of a form field (`participant_name`, `participant_remote_id`).
pub const FIELD_BYTES: usize = 4096;
/// Upload lifetime until attached to a message.
pub const EXPIRY_MS: i64 = 24 * 3600 * 1000;
/// Largest piece of the body handed to the parser at once.
pub const PIECE: usize = 16 * 1024;
/// Body bytes the parser may take without giving out a part or part data.
pub const STALL_BYTES: u64 = 64 * 1024;
/// Longest boundary (RFC 2046 §5.1.1).
const MAX_BOUNDARY: usize = 70;
/// Bytes of a file kept for sniffing ([`sniff`] looks at no more).
const HEAD_BYTES: usize = 1024;
/// Spool writes are batched to this size (one blocking-pool hop per batch).
const SPOOL_BATCH: usize = 1024 * 1024;
/// Spool files older than this are left over by a crash; the next upload removes them.
const SPOOL_STALE: Duration = Duration::from_secs(3600);

const ALLOWED: &[&str] = &[
    ".txt", ".pdf", ".doc", ".docx", ".xls", ".xlsx", ".csv", ".jpg", ".jpeg", ".png", ".gif",
    ".webp", ".mp4", ".mov", ".avi", ".mp3", ".wav", ".html", ".htm", ".css", ".js", ".xml", ".md",
    ".ics", ".vcf", ".rtf", ".tsv", ".yaml", ".yml", ".py", ".c",
];
const BLOCKED_IMAGES: &[&str] = &[".svg", ".svgz", ".bmp", ".tif", ".tiff"];

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

/// Is `b` a boundary RFC 2046 allows (1 to 70 of its characters, not ending in a space)?
pub fn boundary_ok(b: &str) -> bool {
    !b.is_empty()
        && b.len() <= MAX_BOUNDARY
        && !b.ends_with(' ')
        && b.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"'()+_,-./:=? ".contains(&c))
}

/// Why an upload body could not be received.
#[derive(Debug)]
pub enum ReceiveError {
    /// Not a multipart body of this boundary.
    Malformed,
    /// More than [`MAX_REQUEST`] bytes.
    TooLarge,
    /// No byte for the idle deadline.
    Stalled(Duration),
    /// The connection failed.
    Read(String),
    /// The spool could not be written.
    Io(std::io::Error),
}

/// One received file: its name and claimed type, size, first bytes, and its bytes in a spool
/// file (none when empty, or when the upload can no longer pass the size rules).
#[derive(Debug)]
pub struct ReceivedFile {
    pub name: String,
    pub claimed: Option<String>,
    pub size: u64,
    head: Vec<u8>,
    spool: Option<Spool>,
}

impl ReceivedFile {
    /// The file's bytes, read from its spool file, which is removed (blocking: call from the
    /// blocking pool). An error for a file whose bytes were not kept (a refused upload).
    pub fn content(&mut self) -> std::io::Result<Vec<u8>> {
        match self.spool.take() {
            Some(spool) => spool.read(),
            None if self.size == 0 => Ok(Vec::new()),
            None => Err(std::io::Error::other("the file's bytes were not kept")),
        }
    }
}

/// Bytes of uploaded files held in memory at once, by all uploads together, while they go
/// into the database (at most two files' worth of the largest upload; an upload waits for
/// its turn).
const CONTENT_BUDGET: usize = 2 * MAX_BYTES;
static CONTENT: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(CONTENT_BUDGET >> 10);

/// Waits until `bytes` (at most [`MAX_BYTES`]: an upload's total) may be held in memory; they
/// may as long as the permit lives. Why: the bytes of an upload are spooled to disk as they
/// arrive, but go into the database in one piece, so without a bound parallel uploads of
/// 50 MB each would take as much memory as they are many.
pub async fn hold_content(bytes: u64) -> tokio::sync::SemaphorePermit<'static> {
    let kib = bytes.div_ceil(1024).min((CONTENT_BUDGET >> 10) as u64) as u32;
    CONTENT
        .acquire_many(kib)
        .await
        .expect("the content budget is never closed")
}

/// A received upload body.
#[derive(Debug, Default)]
pub struct Received {
    /// The `files` parts with a file name, in order (at most [`MAX_FILES`]).
    pub files: Vec<ReceivedFile>,
    /// More than [`MAX_FILES`] were sent.
    pub too_many: bool,
    pub participant_remote_id: Option<String>,
    pub participant_name: Option<String>,
}

/// Receives a multipart body: `stream` yields its bytes, `idle` is the longest wait for the
/// next ones, spool files go under `data_dir` (see the module doc).
pub async fn receive<S, E>(
    stream: S,
    boundary: &str,
    idle: Duration,
    data_dir: &Path,
) -> Result<Received, ReceiveError>
where
    S: Stream<Item = Result<Bytes, E>> + Send + Unpin + 'static,
    E: std::fmt::Display,
{
    if !boundary_ok(boundary) {
        return Err(ReceiveError::Malformed);
    }
    let shared = Arc::new(Shared::default());
    let feed = Feed {
        inner: stream,
        rest: Bytes::new(),
        idle,
        sleep: Box::pin(tokio::time::sleep(idle)),
        waiting: false,
        give_way: false,
        total: 0,
        shared: Arc::clone(&shared),
    };
    let mut parts = multer::Multipart::new(feed, boundary);
    let spool_dir = data_dir.join("ocs-files").join("incoming");
    let fail = |shared: &Shared| shared.take().unwrap_or(ReceiveError::Malformed);
    let mut out = Received::default();
    // Bytes of all files so far; once a file or the total is past MAX_BYTES the upload fails
    // its checks whatever follows, so nothing more is spooled (and nothing kept).
    let mut total: u64 = 0;
    let mut doomed = false;
    loop {
        let mut field = match parts.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(_) => return Err(fail(&shared)),
        };
        shared.progress();
        let name = field.name().unwrap_or_default().to_string();
        let file_name = field.file_name().map(str::to_string);
        let claimed = field
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().to_string());
        let wanted_field = match (name.as_str(), &file_name) {
            ("participant_remote_id", None) if out.participant_remote_id.is_none() => {
                Some(&mut out.participant_remote_id)
            }
            ("participant_name", None) if out.participant_name.is_none() => {
                Some(&mut out.participant_name)
            }
            _ => None,
        };
        if let Some(slot) = wanted_field {
            let mut value = Vec::new();
            while let Some(chunk) = field.chunk().await.map_err(|_| fail(&shared))? {
                shared.progress();
                let room = FIELD_BYTES.saturating_sub(value.len());
                value.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            *slot = Some(String::from_utf8_lossy(&value).into_owned());
            continue;
        }
        let Some(file_name) = file_name.filter(|_| name == "files") else {
            while field.chunk().await.map_err(|_| fail(&shared))?.is_some() {
                shared.progress();
            }
            continue;
        };
        if out.files.len() >= MAX_FILES {
            out.too_many = true;
            doomed = true;
        }
        let mut file = ReceivedFile {
            name: file_name,
            claimed,
            size: 0,
            head: Vec::new(),
            spool: None,
        };
        while let Some(chunk) = field.chunk().await.map_err(|_| fail(&shared))? {
            shared.progress();
            file.size += chunk.len() as u64;
            total += chunk.len() as u64;
            let room = HEAD_BYTES.saturating_sub(file.head.len());
            file.head.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if file.size > MAX_BYTES as u64 || total > MAX_BYTES as u64 {
                doomed = true;
            }
            if doomed {
                // Drops (and deletes) every spool: this upload is refused.
                file.spool = None;
                out.files.iter_mut().for_each(|f| f.spool = None);
                continue;
            }
            if file.spool.is_none() {
                file.spool = Some(
                    Spool::create(spool_dir.clone())
                        .await
                        .map_err(ReceiveError::Io)?,
                );
            }
            if let Some(spool) = file.spool.as_mut() {
                spool.push(&chunk).await.map_err(ReceiveError::Io)?;
            }
        }
        if let Some(spool) = file.spool.as_mut() {
            spool.flush().await.map_err(ReceiveError::Io)?;
        }
        if !out.too_many {
            out.files.push(file);
        }
    }
    Ok(out)
}

/// What the parser's input knows: bytes fed since the parser last gave something out, and why
/// the input failed (multer only reports that it did).
#[derive(Default)]
struct Shared {
    since_progress: AtomicU64,
    failure: Mutex<Option<ReceiveError>>,
}

impl Shared {
    fn progress(&self) {
        self.since_progress.store(0, Ordering::Relaxed);
    }
    fn fail(&self, e: ReceiveError) {
        let mut f = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        f.get_or_insert(e);
    }
    fn take(&self) -> Option<ReceiveError> {
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }
}

/// The parser's input (see the module doc): pieces of at most [`PIECE`] bytes, one per poll
/// (then it gives way once, so that the parser looks at what it has before taking more), the
/// request and stall limits, the idle deadline.
struct Feed<S> {
    inner: S,
    /// The unfed rest of a chunk larger than a piece.
    rest: Bytes,
    idle: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
    /// Waiting for the client since the idle timer was last set.
    waiting: bool,
    give_way: bool,
    total: u64,
    shared: Arc<Shared>,
}

/// What the parser sees of a failed input; the cause is in [`Shared`].
#[derive(Debug)]
struct InputFailed;

impl std::fmt::Display for InputFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the upload body could not be read")
    }
}

impl std::error::Error for InputFailed {}

impl<S, E> Feed<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    fn fail(&self, e: ReceiveError) -> Poll<Option<Result<Bytes, InputFailed>>> {
        self.shared.fail(e);
        Poll::Ready(Some(Err(InputFailed)))
    }
}

impl<S, E> Stream for Feed<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    type Item = Result<Bytes, InputFailed>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.give_way {
            this.give_way = false;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let mut piece = if !this.rest.is_empty() {
            std::mem::take(&mut this.rest)
        } else {
            loop {
                match Pin::new(&mut this.inner).poll_next(cx) {
                    Poll::Ready(None) => return Poll::Ready(None),
                    Poll::Ready(Some(Err(e))) => {
                        return this.fail(ReceiveError::Read(e.to_string()));
                    }
                    Poll::Ready(Some(Ok(b))) => {
                        this.waiting = false;
                        if !b.is_empty() {
                            break b;
                        }
                    }
                    Poll::Pending => {
                        if !this.waiting {
                            this.waiting = true;
                            let at = tokio::time::Instant::now() + this.idle;
                            this.sleep.as_mut().reset(at);
                        }
                        if this.sleep.as_mut().poll(cx).is_ready() {
                            let idle = this.idle;
                            return this.fail(ReceiveError::Stalled(idle));
                        }
                        return Poll::Pending;
                    }
                }
            }
        };
        if piece.len() > PIECE {
            this.rest = piece.split_off(PIECE);
        }
        this.total += piece.len() as u64;
        if this.total > MAX_REQUEST {
            return this.fail(ReceiveError::TooLarge);
        }
        let fed = this
            .shared
            .since_progress
            .fetch_add(piece.len() as u64, Ordering::Relaxed)
            + piece.len() as u64;
        if fed > STALL_BYTES {
            return this.fail(ReceiveError::Malformed);
        }
        this.give_way = true;
        Poll::Ready(Some(Ok(piece)))
    }
}

/// A file being received, on disk under `incoming/`; removed when dropped unless persisted.
#[derive(Debug)]
struct Spool {
    path: PathBuf,
    file: Option<std::fs::File>,
    batch: Vec<u8>,
}

impl Spool {
    /// Creates a spool file in `dir`, first removing the ones a crash left there.
    async fn create(dir: PathBuf) -> std::io::Result<Spool> {
        let name = format!("{}.part", crate::store::ids::random_token(24));
        let path = dir.join(name);
        let p = path.clone();
        let file = tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&dir)?;
            sweep_stale(&dir);
            std::fs::File::create_new(&p)
        })
        .await
        .map_err(std::io::Error::other)??;
        Ok(Spool {
            path,
            file: Some(file),
            batch: Vec::new(),
        })
    }

    async fn push(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.batch.extend_from_slice(data);
        if self.batch.len() >= SPOOL_BATCH {
            self.flush().await?;
        }
        Ok(())
    }

    /// Writes the batch (on the blocking pool).
    async fn flush(&mut self) -> std::io::Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let (Some(mut file), batch) = (self.file.take(), std::mem::take(&mut self.batch)) else {
            return Err(std::io::Error::other("spool already closed"));
        };
        let (file, mut batch) = tokio::task::spawn_blocking(move || {
            use std::io::Write;
            file.write_all(&batch).map(|()| (file, batch))
        })
        .await
        .map_err(std::io::Error::other)??;
        batch.clear();
        self.file = Some(file);
        self.batch = batch;
        Ok(())
    }

    /// The (flushed) bytes; the spool file is removed when `self` drops (blocking).
    fn read(mut self) -> std::io::Result<Vec<u8>> {
        self.file = None;
        std::fs::read(&self.path)
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Removes spool files older than [`SPOOL_STALE`] (left by a crash mid-upload).
fn sweep_stale(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > SPOOL_STALE);
        if old {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// The OCS checks of a received upload, in OCS's order after access and the session's state:
/// at least one file, (ours) at most [`MAX_FILES`], each file ([`check_file`]), the total.
/// `Ok`: the sniffed content type of each file; `Err`: the user-facing error text.
pub fn check_upload(r: &Received) -> Result<Vec<String>, String> {
    if r.files.is_empty() {
        return Err("No files provided".into());
    }
    if r.too_many {
        return Err(format!("Too many files: at most {MAX_FILES} per upload"));
    }
    let mut types = Vec::with_capacity(r.files.len());
    for f in &r.files {
        types.push(check_file(&f.name, f.claimed.as_deref(), f.size, &f.head)?);
    }
    if r.files.iter().map(|f| f.size).sum::<u64>() > MAX_BYTES as u64 {
        return Err("Total file size exceeds maximum of 50MB".into());
    }
    Ok(types)
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

/// The OCS checks of one file of `size` bytes starting with `head` (in order); `Err` is the
/// user-facing error text.
pub fn check_file(
    name: &str,
    claimed: Option<&str>,
    size: u64,
    head: &[u8],
) -> Result<String, String> {
    if size > MAX_BYTES as u64 {
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
    let sniffed = sniff(head, name);
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// A body arriving in the given chunks.
    struct Chunks(VecDeque<Bytes>);

    impl Stream for Chunks {
        type Item = Result<Bytes, String>;
        fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            Poll::Ready(self.0.pop_front().map(Ok))
        }
    }

    fn chunks(body: &[u8], size: usize) -> Chunks {
        Chunks(body.chunks(size).map(Bytes::copy_from_slice).collect())
    }

    async fn recv(body: &[u8], b: &str, dir: &Path) -> Result<Received, ReceiveError> {
        receive(chunks(body, 7), b, Duration::from_secs(5), dir).await
    }

    #[tokio::test]
    async fn multipart_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let body = b"--XX\r\nContent-Disposition: form-data; name=\"files\"; filename=\"a.txt\"\r\nContent-Type: text/plain\r\n\r\nhello\r\n--XX\r\nContent-Disposition: form-data; name=\"participant_name\"\r\n\r\nAda\r\n--XX\r\nContent-Disposition: form-data; name=\"files\"; filename=\"e.txt\"\r\n\r\n\r\n--XX--\r\n";
        let mut r = recv(body, "XX", dir.path()).await.unwrap();
        assert_eq!(r.files.len(), 2);
        assert_eq!(r.files[0].name, "a.txt");
        assert_eq!(r.files[0].claimed.as_deref(), Some("text/plain"));
        assert_eq!(
            (r.files[0].size, r.files[0].head.as_slice()),
            (5, &b"hello"[..])
        );
        assert_eq!((r.files[1].size, r.files[1].claimed.as_deref()), (0, None));
        assert_eq!(r.participant_name.as_deref(), Some("Ada"));
        assert_eq!(check_upload(&r).unwrap(), ["text/plain", "text/plain"]);
        let incoming = dir.path().join("ocs-files").join("incoming");
        assert!(std::fs::read_dir(&incoming).unwrap().count() > 0, "spooled");
        assert_eq!(r.files[0].content().unwrap(), b"hello");
        assert_eq!(r.files[1].content().unwrap(), b"");
        assert_eq!(
            std::fs::read_dir(&incoming).unwrap().count(),
            0,
            "spool read and removed"
        );
        assert_eq!(
            boundary("multipart/form-data; boundary=\"XX\"").as_deref(),
            Some("XX")
        );
    }

    #[tokio::test]
    async fn refused_uploads_leave_no_spool() {
        let dir = tempfile::tempdir().unwrap();
        let body = b"--XX\r\nContent-Disposition: form-data; name=\"files\"; filename=\"a.txt\"\r\n\r\nhello\r\n--XX\r\nbroken";
        assert!(matches!(
            recv(body, "XX", dir.path()).await,
            Err(ReceiveError::Malformed)
        ));
        let incoming = dir.path().join("ocs-files").join("incoming");
        assert_eq!(std::fs::read_dir(incoming).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn hostile_bodies_are_cut() {
        let dir = tempfile::tempdir().unwrap();
        // A boundary RFC 2046 does not allow: refused before a byte is read.
        let long = "-".repeat(30_000);
        assert!(!boundary_ok(&long) && !boundary_ok("") && boundary_ok("----x7d1"));
        assert!(matches!(
            recv(b"", &long, dir.path()).await,
            Err(ReceiveError::Malformed)
        ));
        // A preamble or part header that never ends: cut after STALL_BYTES, not buffered.
        let junk = vec![b'a'; 1024 * 1024];
        assert!(matches!(
            recv(&junk, "XX", dir.path()).await,
            Err(ReceiveError::Malformed)
        ));
        let mut headers =
            b"--XX\r\nContent-Disposition: form-data; name=\"files\"; filename=\"a".to_vec();
        headers.extend_from_slice(&junk);
        assert!(matches!(
            recv(&headers, "XX", dir.path()).await,
            Err(ReceiveError::Malformed)
        ));
        // Past MAX_REQUEST: 413, as the bytes arrive.
        let mut big =
            b"--XX\r\nContent-Disposition: form-data; name=\"files\"; filename=\"a.txt\"\r\n\r\n"
                .to_vec();
        big.resize(MAX_REQUEST as usize + 10, b'a');
        let r = receive(
            chunks(&big, 256 * 1024),
            "XX",
            Duration::from_secs(5),
            dir.path(),
        )
        .await;
        assert!(matches!(r, Err(ReceiveError::TooLarge)), "{r:?}");
        // A 51 MB file is received (for OCS's answer) but not kept.
        big.truncate(51 * 1024 * 1024);
        big.extend_from_slice(b"\r\n--XX--\r\n");
        let r = receive(
            chunks(&big, 256 * 1024),
            "XX",
            Duration::from_secs(5),
            dir.path(),
        )
        .await
        .unwrap();
        assert!(r.files[0].spool.is_none());
        assert!(
            check_upload(&r)
                .unwrap_err()
                .contains("exceeds maximum size of 50MB")
        );
    }

    #[tokio::test]
    async fn stalled_bodies_time_out() {
        struct Stall;
        impl Stream for Stall {
            type Item = Result<Bytes, String>;
            fn poll_next(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
                Poll::Pending
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let r = receive(Stall, "XX", Duration::from_millis(50), dir.path()).await;
        assert!(matches!(r, Err(ReceiveError::Stalled(_))), "{r:?}");
    }

    #[test]
    fn checks() {
        let c = |n: &str, t: Option<&str>, d: &[u8]| check_file(n, t, d.len() as u64, d);
        assert_eq!(c("a.txt", Some("text/plain"), b"hi").unwrap(), "text/plain");
        assert!(
            c("image.bmp", None, b"BM")
                .unwrap_err()
                .contains("`image.bmp`")
        );
        assert!(c("x.svg", Some("text/plain"), b"<svg/>").is_err());
        assert!(c("photo.jpg", Some("image/jpeg"), b"<svg xmlns='x'></svg>").is_err());
        let e = c("data.zip", Some("application/zip"), b"PK\x03\x04").unwrap_err();
        assert!(e.contains(".txt, .pdf") && !e.contains(", t, "));
        assert_eq!(
            c("p.jpg", None, &[0xFF, 0xD8, 0xFF, 0xE0]).unwrap(),
            "image/jpeg"
        );
        assert!(
            check_file("big.txt", None, MAX_BYTES as u64 + 1, b"a")
                .unwrap_err()
                .contains("exceeds maximum size")
        );
    }
}
