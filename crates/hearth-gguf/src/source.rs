//! Where GGUF bytes come from. The index is read through [`ReadAt`] by growing prefixes, and
//! tensors are then read one at a time, so no caller needs the whole file in memory.

use std::io;

use crate::{parse_index, GgufError, GgufIndex, Parse, TensorInfo};

/// Random-access bytes of known length: a file, a buffer, (later) browser storage.
pub trait ReadAt {
    fn len(&self) -> u64;
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl ReadAt for [u8] {
    fn len(&self) -> u64 {
        <[u8]>::len(self) as u64
    }
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let src = usize::try_from(offset)
            .ok()
            .and_then(|start| self.get(start..start.checked_add(buf.len())?))
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end of the buffer"))?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

impl ReadAt for Vec<u8> {
    fn len(&self) -> u64 {
        self.as_slice().len() as u64
    }
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.as_slice().read_exact_at(offset, buf)
    }
}

/// A file on disk; its length is taken once, when wrapped.
pub struct FileSource {
    file: std::fs::File,
    len: u64,
}

impl FileSource {
    pub fn open(path: impl AsRef<std::path::Path>) -> io::Result<Self> {
        let file = std::fs::File::open(path)?;
        let len = file.metadata()?.len();
        Ok(Self { file, len })
    }
}

impl ReadAt for FileSource {
    fn len(&self) -> u64 {
        self.len
    }

    #[cfg(unix)]
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(&self.file, buf, offset)
    }

    #[cfg(not(unix))]
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        use std::io::{Read, Seek, SeekFrom};
        let mut f = &self.file;
        f.seek(SeekFrom::Start(offset))?;
        f.read_exact(buf)
    }
}

/// Reading a GGUF from a [`ReadAt`] fails either in the bytes or in the I/O.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error("reading the model file: {0}")]
    Io(#[from] io::Error),
}

/// Most bytes of a file's start that are read to find its index: far past any real model's
/// (a 262k-token vocabulary with its merges is ~10 MB), and small enough that a hostile file
/// cannot make the reader (the browser above all) hold gigabytes of header.
pub const MAX_INDEX_BYTES: u64 = 256 << 20;

/// The first prefix to read for the index of a file of `len` bytes: 1 MiB (enough for most
/// models), or the whole file if shorter.
pub fn first_prefix(len: u64) -> u64 {
    len.min(1 << 20)
}

/// The next prefix to read after `want` bytes were not enough and the parser asked for
/// `min_len`: at least double, at most the file, and an error past `max` bytes.
pub fn next_prefix(want: u64, min_len: u64, len: u64, max: u64) -> Result<u64, GgufError> {
    let next = min_len.max(want.saturating_mul(2)).min(len);
    if min_len > max {
        let what = "the GGUF header (metadata and tensor index), in bytes".to_string();
        return Err(GgufError::LimitExceeded { what, value: min_len, limit: max });
    }
    Ok(next.min(max))
}

/// Reads the index by growing prefixes ([`first_prefix`], [`next_prefix`]) up to
/// [`MAX_INDEX_BYTES`].
pub fn read_index<R: ReadAt + ?Sized>(src: &R) -> Result<GgufIndex, ReadError> {
    read_index_within(src, MAX_INDEX_BYTES)
}

/// [`read_index`] with another cap on the header's size.
pub fn read_index_within<R: ReadAt + ?Sized>(src: &R, max: u64) -> Result<GgufIndex, ReadError> {
    let len = src.len();
    let mut want = first_prefix(len).min(max);
    loop {
        let mut prefix = vec![0u8; want as usize];
        src.read_exact_at(0, &mut prefix)?;
        match parse_index(&prefix, Some(len))? {
            Parse::Complete(index) => return Ok(index),
            Parse::NeedMore { min_len } => want = next_prefix(want, min_len, len, max)?,
        }
    }
}

/// Where tensor bytes come from when a read may have to wait: IndexedDB in the browser
/// answers with a promise. Every [`ReadAt`] is a source whose reads are ready at once, so the
/// one (async) weight-loading path serves both; natively it is driven by a blocking executor.
// Callers are generic over the source and await it in place; nothing spawns these futures
// onto a multi-threaded executor, so no `Send` bound is promised.
#[allow(async_fn_in_trait)]
pub trait TensorSource {
    /// One tensor's bytes, exactly `info.n_bytes` of them.
    async fn tensor_bytes(&self, info: &TensorInfo) -> Result<Vec<u8>, ReadError>;
}

impl<R: ReadAt + ?Sized> TensorSource for R {
    async fn tensor_bytes(&self, info: &TensorInfo) -> Result<Vec<u8>, ReadError> {
        read_tensor(self, info)
    }
}

/// Reads one tensor's bytes.
pub fn read_tensor<R: ReadAt + ?Sized>(src: &R, info: &TensorInfo) -> Result<Vec<u8>, ReadError> {
    let n = usize::try_from(info.n_bytes).map_err(|_| GgufError::LimitExceeded {
        what: format!("size of tensor {:?}", info.name),
        value: info.n_bytes,
        limit: usize::MAX as u64,
    })?;
    let mut buf = vec![0u8; n];
    src.read_exact_at(info.offset, &mut buf)?;
    Ok(buf)
}
