//! Opening a file the agent reads on someone else's behalf (a runner file
//! a deploy user may replace, a log an allow-list names in a directory
//! others write to) so that what it is and where it is are judged on the
//! opened descriptor, never on a path that can change between the check
//! and the read.
//!
//! Why: a path is a question that can get a different answer each time
//! it is asked. A FIFO put where a runner was blocks a plain `read`
//! forever; a link to `/dev/zero` never ends; a symlink swapped in between
//! `canonicalize` and `open` makes the allow-list check judge one file and
//! the read return another. So each file is opened once, and everything
//! after that asks the descriptor:
//!
//! - [`open_following`] (runner files: a deploy's link to a versioned file
//!   keeps working) opens with `O_NONBLOCK | O_NOCTTY | O_CLOEXEC`, so
//!   opening a FIFO or a terminal returns at once and takes nothing over,
//!   then `fstat` on the descriptor says what was opened: anything but a
//!   regular file at most the cap is refused with what it is.
//! - [`locate`] (allow-listed files) opens with `O_PATH`: it follows links,
//!   reads nothing and has no effect on a device, and the kernel's own
//!   record of what was opened, `readlink("/proc/self/fd/N")`, is the path
//!   the caller checks against the allow-list. That path belongs to the
//!   descriptor, so swapping any component of the asked path (the last
//!   one, or a directory above it) before, during or after the open
//!   changes nothing: the check and the read are about the same inode.
//!   [`Located::open_regular`] then reopens that very inode through its
//!   `/proc/self/fd` entry (not through the path) for reading, only when
//!   `fstat` says it is a regular file. Resolving the path first and
//!   opening it with `openat2(RESOLVE_NO_SYMLINKS)` would also be safe,
//!   but it refuses every link, including an operator's own link between
//!   two allowed files, and needs Linux 5.6; this works on every kernel
//!   the agent runs on, and without `/proc` it fails closed.
//!
//! Reads are bounded by the cap the file was opened with: at most cap + 1
//! bytes are read, so a file that grows after `fstat` is caught instead of
//! being read to the end. A hard link is one inode with several names:
//! like any path check, this one sees the name it was opened by (the
//! kernel's `protected_hardlinks`, on by default, keeps users from linking
//! files they do not own).

use std::fs::{File, Metadata, OpenOptions};
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// What a path turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A regular file: the only kind that is read.
    Regular,
    /// A directory.
    Directory,
    /// A FIFO (named pipe): a read would wait for a writer.
    Fifo,
    /// A character device (`/dev/zero`, a terminal): a read may never end.
    CharDevice,
    /// A block device.
    BlockDevice,
    /// A Unix socket.
    Socket,
    /// A symbolic link (only seen without following links).
    Symlink,
}

impl Kind {
    /// The kind of what `meta` describes.
    pub fn of(meta: &Metadata) -> Kind {
        let t = meta.file_type();
        if t.is_file() {
            Kind::Regular
        } else if t.is_dir() {
            Kind::Directory
        } else if t.is_fifo() {
            Kind::Fifo
        } else if t.is_char_device() {
            Kind::CharDevice
        } else if t.is_block_device() {
            Kind::BlockDevice
        } else if t.is_socket() {
            Kind::Socket
        } else {
            Kind::Symlink
        }
    }

    /// With its article, for messages: "a FIFO".
    pub fn describe(self) -> &'static str {
        match self {
            Kind::Regular => "a regular file",
            Kind::Directory => "a directory",
            Kind::Fifo => "a FIFO",
            Kind::CharDevice => "a character device",
            Kind::BlockDevice => "a block device",
            Kind::Socket => "a socket",
            Kind::Symlink => "a symbolic link",
        }
    }
}

/// Why a file was not opened or read.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The system refused (not found, permission denied…).
    #[error("{path}: {reason}")]
    Io {
        /// The path as asked.
        path: String,
        /// What the system said, in words.
        reason: String,
        /// The error itself.
        #[source]
        source: std::io::Error,
    },
    /// Opened, but not a regular file.
    #[error("{path} is {}, not a regular file", kind.describe())]
    NotRegular {
        /// The path as asked.
        path: String,
        /// What it is.
        kind: Kind,
    },
    /// A regular file larger than the cap, by `fstat` or while read.
    #[error("{path} is too large: {size} bytes > {cap} bytes")]
    TooLarge {
        /// The path as asked.
        path: String,
        /// Its size (while read: the bytes read so far).
        size: u64,
        /// The cap.
        cap: u64,
    },
    /// Removed (its last name unlinked) while it was being opened.
    #[error("{path} was removed while it was opened")]
    Removed {
        /// The path as asked.
        path: String,
    },
}

impl FileError {
    fn io(path: &Path, source: std::io::Error) -> FileError {
        use std::io::ErrorKind;
        let reason = match source.kind() {
            ErrorKind::PermissionDenied => "permission denied".into(),
            ErrorKind::NotFound => "not found".into(),
            _ => source.to_string(),
        };
        FileError::Io {
            path: path.display().to_string(),
            reason,
            source,
        }
    }

    /// Whether the path named nothing.
    pub fn is_not_found(&self) -> bool {
        matches!(self, FileError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }
}

/// A regular file opened for reading, judged on its descriptor.
#[derive(Debug)]
pub struct Opened {
    file: File,
    meta: Metadata,
    path: String,
    cap: u64,
}

impl Opened {
    /// What `fstat` said when it was opened.
    pub fn metadata(&self) -> &Metadata {
        &self.meta
    }

    /// The file itself, for a reader that seeks (a log's tail); reading
    /// it all goes through [`bounded`](Self::bounded).
    pub fn file(&mut self) -> &mut File {
        &mut self.file
    }

    /// A reader of the whole file that fails with [`FileError::TooLarge`]
    /// (as an `io::Error`) once more than the cap comes: a file that grew
    /// after `fstat` is never read to its new end.
    pub fn bounded(&mut self) -> Bounded<'_> {
        Bounded {
            file: &mut self.file,
            path: &self.path,
            cap: self.cap,
            read: 0,
        }
    }

    /// What a read through [`bounded`](Self::bounded) failed with, as a
    /// [`FileError`] naming this file.
    pub fn read_error(&self, e: std::io::Error) -> FileError {
        match e.downcast::<FileError>() {
            Ok(too_large) => too_large,
            Err(e) => FileError::io(Path::new(&self.path), e),
        }
    }

    /// The whole file, at most the cap.
    pub fn read_all(mut self) -> Result<Vec<u8>, FileError> {
        let mut buf = Vec::with_capacity(self.meta.len().min(self.cap) as usize);
        match self.bounded().read_to_end(&mut buf) {
            Ok(_) => Ok(buf),
            Err(e) => Err(self.read_error(e)),
        }
    }
}

/// See [`Opened::bounded`].
pub struct Bounded<'a> {
    file: &'a mut File,
    path: &'a str,
    cap: u64,
    read: u64,
}

impl Read for Bounded<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        // One byte past the cap is asked for, so growth shows.
        let room = (self.cap - self.read.min(self.cap)).saturating_add(1);
        let want = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        let n = self.file.read(&mut buf[..want])?;
        self.read += n as u64;
        if self.read > self.cap {
            return Err(std::io::Error::other(FileError::TooLarge {
                path: self.path.to_string(),
                size: self.read,
                cap: self.cap,
            }));
        }
        Ok(n)
    }
}

/// Read-only, never blocking on open, never becoming a controlling
/// terminal (std adds `O_CLOEXEC`).
fn read_options() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.read(true).custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY);
    o
}

/// `file` (opened as `path`) if `meta` says it is a regular file of at
/// most `cap` bytes.
fn judge(file: File, meta: Metadata, path: &Path, cap: u64) -> Result<Opened, FileError> {
    let path_text = path.display().to_string();
    match Kind::of(&meta) {
        Kind::Regular if meta.len() > cap => Err(FileError::TooLarge {
            path: path_text,
            size: meta.len(),
            cap,
        }),
        Kind::Regular => Ok(Opened {
            file,
            meta,
            path: path_text,
            cap,
        }),
        kind => Err(FileError::NotRegular {
            path: path_text,
            kind,
        }),
    }
}

/// Opens `path`, following links, without blocking, and keeps it only if
/// the descriptor is a regular file of at most `cap` bytes.
pub fn open_following(path: &Path, cap: u64) -> Result<Opened, FileError> {
    peek(path)?.into_regular(cap)
}

/// A file opened (links followed, without blocking) and not yet judged:
/// for a watcher that looks at what a path leads to before deciding to
/// read it.
#[derive(Debug)]
pub struct Peeked {
    file: File,
    meta: Metadata,
    path: PathBuf,
}

impl Peeked {
    /// What `fstat` on the descriptor said.
    pub fn metadata(&self) -> &Metadata {
        &self.meta
    }

    /// What it is.
    pub fn kind(&self) -> Kind {
        Kind::of(&self.meta)
    }

    /// This descriptor, if it is a regular file of at most `cap` bytes.
    pub fn into_regular(self, cap: u64) -> Result<Opened, FileError> {
        judge(self.file, self.meta, &self.path, cap)
    }
}

/// Opens `path`, following links, without blocking (a FIFO or a terminal
/// opens at once and nothing is read), and says what the descriptor is.
pub fn peek(path: &Path) -> Result<Peeked, FileError> {
    let file = read_options()
        .open(path)
        .map_err(|e| FileError::io(path, e))?;
    let meta = file.metadata().map_err(|e| FileError::io(path, e))?;
    Ok(Peeked {
        file,
        meta,
        path: path.to_path_buf(),
    })
}

/// [`open_following`], then the whole file.
pub fn read_file(path: &Path, cap: u64) -> Result<Vec<u8>, FileError> {
    open_following(path, cap)?.read_all()
}

/// A file found, not yet opened for reading: see [`locate`].
#[derive(Debug)]
pub struct Located {
    /// An `O_PATH` descriptor: it pins the inode and reads nothing.
    fd: File,
    meta: Metadata,
    real: PathBuf,
    path: PathBuf,
}

impl Located {
    /// The path of what was opened, as the kernel records it for the
    /// descriptor: the path to check against an allow-list.
    pub fn real_path(&self) -> &Path {
        &self.real
    }

    /// What `fstat` on the descriptor said.
    pub fn metadata(&self) -> &Metadata {
        &self.meta
    }

    /// What it is.
    pub fn kind(&self) -> Kind {
        Kind::of(&self.meta)
    }

    /// Opens this very inode for reading (through the descriptor, not the
    /// path) if it is a regular file of at most `cap` bytes.
    pub fn open_regular(&self, cap: u64) -> Result<Opened, FileError> {
        let kind = self.kind();
        if kind != Kind::Regular {
            return Err(FileError::NotRegular {
                path: self.path.display().to_string(),
                kind,
            });
        }
        let file = read_options()
            .open(fd_path(&self.fd))
            .map_err(|e| FileError::io(&self.path, e))?;
        let meta = file.metadata().map_err(|e| FileError::io(&self.path, e))?;
        // The same inode by construction; checked so that a surprise in
        // /proc (another mount over it) cannot hand over another file.
        if (meta.dev(), meta.ino()) != (self.meta.dev(), self.meta.ino()) {
            return Err(FileError::io(
                &self.path,
                std::io::Error::other("/proc/self/fd reopened a different file"),
            ));
        }
        judge(file, meta, &self.path, cap)
    }
}

fn fd_path(fd: &File) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Opens `path` with `O_PATH` (following links; no read, no effect on a
/// device or FIFO) and learns, from the descriptor, what it is and where
/// it really is. Fails closed when that cannot be learned (no `/proc`).
pub fn locate(path: &Path) -> Result<Located, FileError> {
    let fd = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH)
        .open(path)
        .map_err(|e| FileError::io(path, e))?;
    located(fd, path)
}

/// What the `O_PATH` descriptor `fd`, opened as `path`, is and where.
fn located(fd: File, path: &Path) -> Result<Located, FileError> {
    let real = std::fs::read_link(fd_path(&fd)).map_err(|e| {
        FileError::io(
            path,
            std::io::Error::new(
                e.kind(),
                format!("cannot tell what it resolves to (is /proc mounted?): {e}"),
            ),
        )
    })?;
    // After readlink: a file unlinked before it has the path
    // "<old path> (deleted)", which names no file.
    let meta = fd.metadata().map_err(|e| FileError::io(path, e))?;
    if meta.nlink() == 0 {
        return Err(FileError::Removed {
            path: path.display().to_string(),
        });
    }
    Ok(Located {
        fd,
        meta,
        real,
        path: path.to_path_buf(),
    })
}

#[cfg(test)]
mod tests;
