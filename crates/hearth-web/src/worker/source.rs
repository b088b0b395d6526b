//! A stored model as a [`TensorSource`]: bytes come from IndexedDB chunk by chunk, and each
//! chunk is checked against the sha256 recorded when it was written before a byte of it is
//! used. A damaged chunk stops the load and is named, so the worker can re-fetch it.

use std::cell::{Cell, RefCell};
use std::io;

use hearth_gguf::{
    first_prefix, next_prefix, parse_index, GgufIndex, Parse, ReadError, TensorInfo, TensorSource, MAX_INDEX_BYTES,
};
use sha2::{Digest, Sha256};

use crate::store::{ModelMeta, Store, CHUNK};

/// Chunks kept in memory while loading (16 MiB).
const CACHED_CHUNKS: usize = 4;

pub struct StoredSource<'a> {
    store: &'a Store,
    meta: &'a ModelMeta,
    size: u64,
    /// The last few chunks read, most recent last. The loader visits a layer's tensors in
    /// its own order, not the file's, but within a few chunks of each other: with a single
    /// chunk cached, SmolLM2 read 3.6× its size from storage.
    cached: RefCell<Vec<(usize, Vec<u8>)>>,
    /// Chunks already checked against their sha256 (a re-read need not hash again).
    checked: RefCell<Vec<bool>>,
    /// The chunk that failed its check, if one did.
    corrupt: Cell<Option<usize>>,
    /// Bytes read from storage and milliseconds spent waiting for (and checking) them, for
    /// the load's storage throughput.
    pub bytes_read: Cell<u64>,
    pub read_ms: Cell<f64>,
}

pub fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

impl<'a> StoredSource<'a> {
    /// `meta` must be complete.
    pub fn new(store: &'a Store, meta: &'a ModelMeta) -> Self {
        let size = meta.size.unwrap_or(0);
        StoredSource {
            store,
            meta,
            size,
            cached: RefCell::default(),
            checked: RefCell::new(vec![false; meta.chunk_sha.len()]),
            corrupt: Cell::new(None),
            bytes_read: Cell::new(0),
            read_ms: Cell::new(0.0),
        }
    }

    /// The chunk that failed its sha256 check during the last read, if any.
    pub fn corrupt_chunk(&self) -> Option<usize> {
        self.corrupt.get()
    }

    /// Brings chunk `index` to the end of the cache, reading and checking it if needed.
    async fn load_chunk(&self, index: usize) -> io::Result<()> {
        {
            let mut cached = self.cached.borrow_mut();
            if let Some(at) = cached.iter().position(|(i, _)| *i == index) {
                let hit = cached.remove(at);
                cached.push(hit);
                return Ok(());
            }
        }
        let t0 = super::now_ms();
        let bytes = self.store.chunk(&self.meta.id, index).await.map_err(io::Error::other)?.ok_or_else(|| {
            self.corrupt.set(Some(index));
            io::Error::new(io::ErrorKind::NotFound, format!("chunk {index} is missing from storage"))
        })?;
        if !self.checked.borrow().get(index).copied().unwrap_or(false) {
            let expected = self.meta.chunk_sha.get(index).map(String::as_str).unwrap_or("");
            if hex(&Sha256::digest(&bytes)) != expected {
                self.corrupt.set(Some(index));
                return Err(io::Error::new(io::ErrorKind::InvalidData, format!("stored chunk {index} is corrupt")));
            }
            self.checked.borrow_mut()[index] = true;
        }
        self.bytes_read.set(self.bytes_read.get() + bytes.len() as u64);
        self.read_ms.set(self.read_ms.get() + super::now_ms() - t0);
        let mut cached = self.cached.borrow_mut();
        if cached.len() == CACHED_CHUNKS {
            cached.remove(0);
        }
        cached.push((index, bytes));
        Ok(())
    }

    /// Reads `len` bytes at `offset`.
    pub async fn read(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let end = offset.checked_add(len as u64).filter(|&e| e <= self.size).ok_or_else(|| {
            io::Error::new(io::ErrorKind::UnexpectedEof, format!("read of {len} bytes at {offset} passes the end"))
        })?;
        let mut out = Vec::with_capacity(len);
        let mut pos = offset;
        while pos < end {
            let index = (pos / CHUNK) as usize;
            self.load_chunk(index).await?;
            let cached = self.cached.borrow();
            let Some((_, chunk)) = cached.last() else {
                return Err(io::Error::other(format!("chunk {index} was not cached")));
            };
            let start = (pos - index as u64 * CHUNK) as usize;
            let take = ((end - pos) as usize).min(chunk.len() - start);
            if take == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, format!("chunk {index} is short")));
            }
            out.extend_from_slice(&chunk[start..start + take]);
            pos += take as u64;
        }
        Ok(out)
    }

    /// The GGUF index, parsed from growing prefixes as natively (`hearth_gguf::read_index`),
    /// up to `MAX_INDEX_BYTES`.
    pub async fn index(&self) -> Result<GgufIndex, ReadError> {
        let mut want = first_prefix(self.size);
        loop {
            let prefix = self.read(0, want as usize).await?;
            match parse_index(&prefix, Some(self.size))? {
                Parse::Complete(index) => return Ok(index),
                Parse::NeedMore { min_len } => want = next_prefix(want, min_len, self.size, MAX_INDEX_BYTES)?,
            }
        }
    }
}

impl TensorSource for StoredSource<'_> {
    async fn tensor_bytes(&self, info: &TensorInfo) -> Result<Vec<u8>, ReadError> {
        let len = usize::try_from(info.n_bytes)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("tensor {:?} is too large", info.name)))?;
        Ok(self.read(info.offset, len).await?)
    }
}
