//! A thin SQLite VFS over the platform's default one that turns the writer's WAL appends of
//! one transaction into a single `pwrite`.
//!
//! SQLite writes every WAL frame with two system calls (its 24-byte header, then the page),
//! so a group commit of 60 pages made ~120 `pwrite`s: the largest share of the writer
//! thread's kernel time in `botyard bench`. This VFS ("botyard-wal", used by the writer
//! connection only) keeps contiguous appends to a WAL file in memory and hands them to the
//! real file in one write (or a few: see [`WRITE_MAX`]):
//!
//! * when the page of a **commit frame** is written (the frame header's "database size after
//!   commit" field is non-zero) — that is inside SQLite's frame-writing loop, before the
//!   wal-index is updated, so no other connection can see a frame that is not in the file
//!   yet, and a turn is acknowledged only after its commit returned;
//! * before any other operation on that file (read, sync, truncate, size, lock, file
//!   control, close), so SQLite never observes the buffer, and `--durability full` syncs
//!   what it wrote;
//! * on a write that does not append, and when the buffer reaches [`FLUSH_AT`] bytes.
//!
//! A crash loses at most the frames of a transaction that had not committed — what a torn
//! WAL append loses anyway, and what recovery already ignores. Every other file, and every
//! other method, goes straight to the default VFS.

use rusqlite::ffi;
use std::ffi::{CStr, c_int, c_void};
use std::sync::OnceLock;

/// Name the writer connection opens the database with.
pub const NAME: &str = "botyard-wal";
const NAME_C: &CStr = c"botyard-wal";

/// Buffered bytes that force a write (a transaction that spills many pages).
const FLUSH_AT: usize = 1 << 20;
/// Largest single write the default (unix) VFS performs whole: it writes at most 128 KiB - 1
/// bytes per call and reports a shorter write as a full disk.
const WRITE_MAX: usize = 31 * 4096;
/// Size of a WAL frame header (SQLite's file format).
const FRAME_HEADER: c_int = 24;

#[repr(C)]
struct ShimFile {
    /// Must come first: SQLite sees this struct as a `sqlite3_file`.
    base: ffi::sqlite3_file,
    /// The default VFS's file, placed right after this struct in SQLite's allocation.
    real: *mut ffi::sqlite3_file,
    /// Buffering applies (the file is a WAL).
    wal: bool,
    /// The next page written ends a commit.
    commit_next: bool,
    buf_off: i64,
    buf: Vec<u8>,
}

/// Registration outcome (the VFS struct is leaked: SQLite keeps pointing at it).
static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();

fn shim_offset() -> usize {
    std::mem::size_of::<ShimFile>().next_multiple_of(16)
}

/// Register the VFS (once per process). Connections opt in by name.
pub fn register() -> Result<(), String> {
    REGISTERED
        .get_or_init(|| unsafe {
            let real = ffi::sqlite3_vfs_find(std::ptr::null());
            if real.is_null() {
                return Err("no default SQLite VFS".into());
            }
            let mut vfs: ffi::sqlite3_vfs = *real;
            vfs.zName = NAME_C.as_ptr();
            vfs.pNext = std::ptr::null_mut();
            vfs.szOsFile = (shim_offset() + (*real).szOsFile as usize) as c_int;
            vfs.xOpen = Some(x_open);
            // Every other VFS method is the default VFS's own; they only use `pAppData`
            // (copied) or nothing from the VFS object.
            let vfs = Box::into_raw(Box::new(vfs));
            let rc = ffi::sqlite3_vfs_register(vfs, 0);
            if rc != ffi::SQLITE_OK {
                return Err(format!("sqlite3_vfs_register failed: {rc}"));
            }
            Ok(())
        })
        .clone()
}

fn real_vfs() -> *mut ffi::sqlite3_vfs {
    // The default VFS at registration time; ours is never the default.
    unsafe { ffi::sqlite3_vfs_find(std::ptr::null()) }
}

unsafe extern "C" fn x_open(
    _vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    unsafe {
        let shim = file as *mut ShimFile;
        let real = (file as *mut u8).add(shim_offset()) as *mut ffi::sqlite3_file;
        std::ptr::write(
            shim,
            ShimFile {
                base: ffi::sqlite3_file {
                    pMethods: std::ptr::null(),
                },
                real,
                wal: flags & ffi::SQLITE_OPEN_WAL != 0,
                commit_next: false,
                buf_off: 0,
                buf: Vec::new(),
            },
        );
        let rv = real_vfs();
        let rc = match (*rv).xOpen {
            Some(open) => open(rv, name, real, flags, out_flags),
            None => ffi::SQLITE_ERROR,
        };
        if rc != ffi::SQLITE_OK || (*real).pMethods.is_null() {
            // SQLite calls no method of a file whose open failed (pMethods stays null).
            std::ptr::drop_in_place(shim);
            return if rc == ffi::SQLITE_OK {
                ffi::SQLITE_ERROR
            } else {
                rc
            };
        }
        (*shim).base.pMethods = methods_for((*(*real).pMethods).iVersion);
        ffi::SQLITE_OK
    }
}

unsafe fn shim<'a>(f: *mut ffi::sqlite3_file) -> &'a mut ShimFile {
    unsafe { &mut *(f as *mut ShimFile) }
}

unsafe fn real_methods<'a>(s: &ShimFile) -> &'a ffi::sqlite3_io_methods {
    unsafe { &*(*s.real).pMethods }
}

/// Hand the buffered appends to the real file.
unsafe fn flush(s: &mut ShimFile) -> c_int {
    if s.buf.is_empty() {
        return ffi::SQLITE_OK;
    }
    let Some(write) = (unsafe { real_methods(s).xWrite }) else {
        return ffi::SQLITE_IOERR_WRITE;
    };
    let mut rc = ffi::SQLITE_OK;
    let mut off = s.buf_off;
    for chunk in s.buf.chunks(WRITE_MAX) {
        rc = unsafe {
            write(
                s.real,
                chunk.as_ptr() as *const c_void,
                chunk.len() as c_int,
                off,
            )
        };
        if rc != ffi::SQLITE_OK {
            break;
        }
        off += chunk.len() as i64;
    }
    s.buf.clear();
    s.commit_next = false;
    if s.buf.capacity() > 4 * FLUSH_AT {
        s.buf = Vec::new();
    }
    rc
}

unsafe extern "C" fn x_write(
    f: *mut ffi::sqlite3_file,
    data: *const c_void,
    amt: c_int,
    off: i64,
) -> c_int {
    unsafe {
        let s = shim(f);
        if !s.wal || amt <= 0 {
            let rc = flush(s);
            if rc != ffi::SQLITE_OK {
                return rc;
            }
            return match real_methods(s).xWrite {
                Some(w) => w(s.real, data, amt, off),
                None => ffi::SQLITE_IOERR_WRITE,
            };
        }
        if !s.buf.is_empty() && off != s.buf_off + s.buf.len() as i64 {
            let rc = flush(s);
            if rc != ffi::SQLITE_OK {
                return rc;
            }
        }
        if s.buf.is_empty() {
            s.buf_off = off;
        }
        let bytes = std::slice::from_raw_parts(data as *const u8, amt as usize);
        s.buf.extend_from_slice(bytes);
        if amt == FRAME_HEADER {
            // Bytes 4..8 of a frame header: the database size after a commit, 0 otherwise.
            s.commit_next = bytes[4..8] != [0, 0, 0, 0];
            ffi::SQLITE_OK
        } else if s.commit_next || s.buf.len() >= FLUSH_AT {
            flush(s)
        } else {
            ffi::SQLITE_OK
        }
    }
}

/// A forwarding method that first writes out what is buffered.
macro_rules! flushed {
    ($name:ident, $field:ident, ($($arg:ident : $ty:ty),*), $missing:expr) => {
        unsafe extern "C" fn $name(f: *mut ffi::sqlite3_file $(, $arg: $ty)*) -> c_int {
            unsafe {
                let s = shim(f);
                let rc = flush(s);
                if rc != ffi::SQLITE_OK {
                    return rc;
                }
                match real_methods(s).$field {
                    Some(m) => m(s.real $(, $arg)*),
                    None => $missing,
                }
            }
        }
    };
}

flushed!(x_read, xRead, (buf: *mut c_void, amt: c_int, off: i64), ffi::SQLITE_IOERR_READ);
flushed!(x_truncate, xTruncate, (size: i64), ffi::SQLITE_IOERR_TRUNCATE);
flushed!(x_sync, xSync, (flags: c_int), ffi::SQLITE_IOERR_FSYNC);
flushed!(x_file_size, xFileSize, (size: *mut i64), ffi::SQLITE_IOERR_FSTAT);
flushed!(x_lock, xLock, (level: c_int), ffi::SQLITE_IOERR_LOCK);
flushed!(x_unlock, xUnlock, (level: c_int), ffi::SQLITE_IOERR_UNLOCK);
flushed!(x_check_reserved_lock, xCheckReservedLock, (out: *mut c_int), ffi::SQLITE_IOERR_CHECKRESERVEDLOCK);
flushed!(x_file_control, xFileControl, (op: c_int, arg: *mut c_void), ffi::SQLITE_NOTFOUND);
flushed!(x_shm_map, xShmMap, (pg: c_int, pgsz: c_int, extend: c_int, out: *mut *mut c_void), ffi::SQLITE_IOERR_SHMMAP);
flushed!(x_shm_lock, xShmLock, (offset: c_int, n: c_int, flags: c_int), ffi::SQLITE_IOERR_SHMLOCK);
flushed!(x_shm_unmap, xShmUnmap, (delete: c_int), ffi::SQLITE_OK);
flushed!(x_fetch, xFetch, (off: i64, amt: c_int, out: *mut *mut c_void), {
    // No memory mapping: SQLite falls back to reads.
    *out = std::ptr::null_mut();
    ffi::SQLITE_OK
});
flushed!(x_unfetch, xUnfetch, (off: i64, p: *mut c_void), ffi::SQLITE_OK);

unsafe extern "C" fn x_close(f: *mut ffi::sqlite3_file) -> c_int {
    unsafe {
        let s = shim(f);
        let flushed = flush(s);
        let rc = match real_methods(s).xClose {
            Some(c) => c(s.real),
            None => ffi::SQLITE_OK,
        };
        std::ptr::drop_in_place(f as *mut ShimFile);
        if flushed != ffi::SQLITE_OK {
            flushed
        } else {
            rc
        }
    }
}

unsafe extern "C" fn x_sector_size(f: *mut ffi::sqlite3_file) -> c_int {
    unsafe {
        let s = shim(f);
        match real_methods(s).xSectorSize {
            Some(m) => m(s.real),
            None => 4096,
        }
    }
}

unsafe extern "C" fn x_device_characteristics(f: *mut ffi::sqlite3_file) -> c_int {
    unsafe {
        let s = shim(f);
        match real_methods(s).xDeviceCharacteristics {
            Some(m) => m(s.real),
            None => 0,
        }
    }
}

unsafe extern "C" fn x_shm_barrier(f: *mut ffi::sqlite3_file) {
    unsafe {
        let s = shim(f);
        if let Some(m) = real_methods(s).xShmBarrier {
            m(s.real)
        }
    }
}

struct Methods([ffi::sqlite3_io_methods; 3]);
// SAFETY: immutable tables of function pointers.
unsafe impl Sync for Methods {}

/// Method tables of versions 1–3, matching what the real file supports (SQLite reads the
/// version to know which entries exist).
static METHODS: Methods = Methods([table(1), table(2), table(3)]);

const fn table(version: c_int) -> ffi::sqlite3_io_methods {
    ffi::sqlite3_io_methods {
        iVersion: version,
        xClose: Some(x_close),
        xRead: Some(x_read),
        xWrite: Some(x_write),
        xTruncate: Some(x_truncate),
        xSync: Some(x_sync),
        xFileSize: Some(x_file_size),
        xLock: Some(x_lock),
        xUnlock: Some(x_unlock),
        xCheckReservedLock: Some(x_check_reserved_lock),
        xFileControl: Some(x_file_control),
        xSectorSize: Some(x_sector_size),
        xDeviceCharacteristics: Some(x_device_characteristics),
        xShmMap: if version >= 2 { Some(x_shm_map) } else { None },
        xShmLock: if version >= 2 { Some(x_shm_lock) } else { None },
        xShmBarrier: if version >= 2 {
            Some(x_shm_barrier)
        } else {
            None
        },
        xShmUnmap: if version >= 2 {
            Some(x_shm_unmap)
        } else {
            None
        },
        xFetch: if version >= 3 { Some(x_fetch) } else { None },
        xUnfetch: if version >= 3 { Some(x_unfetch) } else { None },
    }
}

fn methods_for(version: c_int) -> *const ffi::sqlite3_io_methods {
    let i = (version.clamp(1, 3) - 1) as usize;
    &METHODS.0[i]
}

#[cfg(test)]
mod tests {
    use rusqlite::{Connection, OpenFlags};

    #[test]
    fn name() {
        assert_eq!(super::NAME_C.to_str().ok(), Some(super::NAME));
    }

    /// Transactions through the VFS — small ones, one that spills pages to the WAL before
    /// its commit and reads them back (a tiny page cache), one rolled back — are exactly
    /// what a connection on the default VFS reads, in both synchronous modes, and the WAL
    /// restarts from its start after a checkpoint.
    #[test]
    fn other_connections_read_what_the_writer_committed() {
        super::register().unwrap();
        for sync in ["NORMAL", "FULL"] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("t.db");
            let w = Connection::open_with_flags_and_vfs(&path, OpenFlags::default(), super::NAME)
                .unwrap();
            w.pragma_update(None, "journal_mode", "WAL").unwrap();
            w.pragma_update(None, "synchronous", sync).unwrap();
            w.pragma_update(None, "cache_size", 10).unwrap();
            w.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
                .unwrap();
            let r = Connection::open(&path).unwrap();
            let count = |c: &Connection| -> i64 {
                c.query_row("SELECT COUNT(*) FROM t", [], |x| x.get(0))
                    .unwrap()
            };
            for i in 0..50 {
                w.execute("INSERT INTO t(v) VALUES (?1)", [format!("row {i}")])
                    .unwrap();
                assert_eq!(count(&r), i + 1);
            }
            w.execute_batch("BEGIN").unwrap();
            for i in 0..20_000 {
                w.execute("INSERT INTO t(v) VALUES (?1)", [format!("{i:0>200}")])
                    .unwrap();
            }
            // Read back through the writer while its spilled frames are buffered.
            assert_eq!(count(&w), 20_050);
            assert_eq!(count(&r), 50);
            w.execute_batch("COMMIT").unwrap();
            assert_eq!(count(&r), 20_050);
            w.execute_batch("BEGIN; DELETE FROM t; ROLLBACK").unwrap();
            assert_eq!(count(&r), 20_050);
            let ok: String = r
                .query_row("PRAGMA integrity_check", [], |x| x.get(0))
                .unwrap();
            assert_eq!(ok, "ok");
            let (busy, log, done): (i64, i64, i64) = w
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |x| {
                    Ok((x.get(0)?, x.get(1)?, x.get(2)?))
                })
                .unwrap();
            assert_eq!((busy, log, done), (0, 0, 0));
            w.execute("INSERT INTO t(v) VALUES ('after restart')", [])
                .unwrap();
            drop(w);
            let fresh = Connection::open(&path).unwrap();
            assert_eq!(count(&fresh), 20_051);
        }
    }
}
