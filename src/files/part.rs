//! The receiver's encrypted part file (PROTOCOL.md §14.2).
//!
//! A received file stays encrypted in the data directory until the user saves it. The
//! part file is a sequence of fixed-size slots, one per chunk, at
//! `index * (chunk_size + SLOT_OVERHEAD)`:
//!
//! ```text
//! nonce (12, random per write) || AES-256-GCM(key, nonce, chunk, aad) || tag (16)
//! aad = "umbra-part-v1" || transfer_id (16) || BE64(index) || BE32(chunk length)
//! ```
//!
//! The key is 32 random bytes per transfer, kept only in the encrypted store. A chunk can
//! be written more than once (a crash between writing and recording it, or a re-sent
//! chunk), so nonces are random rather than derived from the index: a rewrite with
//! different bytes never reuses a nonce. The AAD binds a slot to its transfer, position
//! and length, so slots cannot be swapped or truncated unnoticed.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::FileError;
use crate::session::fill_random;

/// Bytes a slot adds to its chunk: nonce and tag.
pub const SLOT_OVERHEAD: u64 = 12 + 16;

const AAD_LABEL: &[u8] = b"umbra-part-v1";

/// Geometry of a transfer: how its bytes split into chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// File size in bytes.
    pub size: u64,
    /// Chunk size in bytes (1..=MAX_CHUNK).
    pub chunk_size: u32,
}

impl Layout {
    /// Number of chunks.
    pub fn chunks(&self) -> u64 {
        self.size.div_ceil(u64::from(self.chunk_size.max(1)))
    }

    /// Length of chunk `index`, or `None` past the end.
    pub fn chunk_len(&self, index: u64) -> Option<usize> {
        if index >= self.chunks() {
            return None;
        }
        let cs = u64::from(self.chunk_size);
        let start = index * cs;
        usize::try_from((self.size - start).min(cs)).ok()
    }

    /// Byte offset of chunk `index` in the plain file.
    pub fn offset(&self, index: u64) -> u64 {
        index * u64::from(self.chunk_size)
    }
}

/// An open encrypted part file.
pub struct PartFile {
    file: File,
    path: PathBuf,
    cipher: Aes256Gcm,
    transfer_id: [u8; 16],
    layout: Layout,
}

impl std::fmt::Debug for PartFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PartFile")
    }
}

/// A fresh random part-file name and key.
pub fn new_part() -> (String, Zeroizing<[u8; 32]>) {
    let mut id = [0u8; 16];
    fill_random(&mut id);
    let mut key = Zeroizing::new([0u8; 32]);
    fill_random(&mut key[..]);
    (format!("{}.part", hex::encode(id)), key)
}

impl PartFile {
    /// Opens (creating it, mode 0600) the part file `dir/name`.
    pub fn open(
        dir: &Path,
        name: &str,
        key: &[u8; 32],
        transfer_id: [u8; 16],
        layout: Layout,
    ) -> Result<PartFile, FileError> {
        if name.contains('/') || name.starts_with('.') {
            return Err(FileError::Corrupt {
                what: "part file name",
            });
        }
        std::fs::create_dir_all(dir).map_err(FileError::io("creating the files directory"))?;
        let path = dir.join(name);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(FileError::io("opening a part file"))?;
        let cipher = Aes256Gcm::new_from_slice(key).map_err(|_| FileError::Corrupt {
            what: "part file key",
        })?;
        Ok(PartFile {
            file,
            path,
            cipher,
            transfer_id,
            layout,
        })
    }

    /// The part file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn slot_offset(&self, index: u64) -> u64 {
        index * (u64::from(self.layout.chunk_size) + SLOT_OVERHEAD)
    }

    fn aad(&self, index: u64, len: usize) -> Vec<u8> {
        let mut aad = Vec::with_capacity(AAD_LABEL.len() + 16 + 8 + 4);
        aad.extend_from_slice(AAD_LABEL);
        aad.extend_from_slice(&self.transfer_id);
        aad.extend_from_slice(&index.to_be_bytes());
        aad.extend_from_slice(&(len as u32).to_be_bytes());
        aad
    }

    /// Encrypts and writes chunk `index` (not yet synced; call [`PartFile::sync`]).
    /// `data` must have exactly the chunk's length.
    pub fn write_chunk(&self, index: u64, data: &[u8]) -> Result<(), FileError> {
        if self.layout.chunk_len(index) != Some(data.len()) {
            return Err(FileError::BadChunk);
        }
        let mut nonce = [0u8; 12];
        fill_random(&mut nonce);
        let aad = self.aad(index, data.len());
        let ct = self
            .cipher
            .encrypt(
                &nonce.into(),
                Payload {
                    msg: data,
                    aad: &aad,
                },
            )
            .map_err(|_| FileError::Corrupt { what: "encryption" })?;
        let mut slot = Vec::with_capacity(12 + ct.len());
        slot.extend_from_slice(&nonce);
        slot.extend_from_slice(&ct);
        self.file
            .write_all_at(&slot, self.slot_offset(index))
            .map_err(FileError::io("writing a part file"))
    }

    /// Makes every write so far durable.
    pub fn sync(&self) -> Result<(), FileError> {
        self.file
            .sync_data()
            .map_err(FileError::io("syncing a part file"))
    }

    /// Reads and authenticates chunk `index`.
    pub fn read_chunk(&self, index: u64) -> Result<Zeroizing<Vec<u8>>, FileError> {
        let len = self.layout.chunk_len(index).ok_or(FileError::BadChunk)?;
        let mut slot = vec![0u8; 12 + len + 16];
        self.file
            .read_exact_at(&mut slot, self.slot_offset(index))
            .map_err(FileError::io("reading a part file"))?;
        let aad = self.aad(index, len);
        let (nonce, ct) = slot.split_at(12);
        let nonce: [u8; 12] = nonce.try_into().map_err(|_| FileError::BadChunk)?;
        self.cipher
            .decrypt(&nonce.into(), Payload { msg: ct, aad: &aad })
            .map(Zeroizing::new)
            .map_err(|_| FileError::Corrupt {
                what: "a stored chunk (it does not authenticate)",
            })
    }

    /// Streams the plain file in order through `sink`, returning its SHA-256.
    pub fn stream(
        &self,
        mut sink: impl FnMut(&[u8]) -> Result<(), FileError>,
    ) -> Result<[u8; 32], FileError> {
        let mut h = Sha256::new();
        for i in 0..self.layout.chunks() {
            let chunk = self.read_chunk(i)?;
            h.update(&chunk[..]);
            sink(&chunk)?;
        }
        Ok(h.finalize().into())
    }

    /// SHA-256 of the plain file (every chunk must be present).
    pub fn sha256(&self) -> Result<[u8; 32], FileError> {
        self.stream(|_| Ok(()))
    }

    /// Decrypts the whole file to a new file at `dest` (never replacing an existing
    /// one), checking it against `sha256`. Written to a temporary name in the same
    /// directory, synced, then linked into place; nothing is left behind on error.
    pub fn export(&self, dest: &Path, sha256: &[u8; 32]) -> Result<(), FileError> {
        let dir = dest.parent().unwrap_or(Path::new("."));
        let mut tmp = tempfile::Builder::new()
            .prefix(".umbra-save-")
            .tempfile_in(dir)
            .map_err(FileError::io("creating the destination file"))?;
        let got = self.stream(|b| {
            tmp.write_all(b)
                .map_err(FileError::io("writing the destination file"))
        })?;
        if !bool::from(subtle::ConstantTimeEq::ct_eq(&got[..], &sha256[..])) {
            return Err(FileError::HashMismatch);
        }
        tmp.as_file()
            .sync_all()
            .map_err(FileError::io("syncing the destination file"))?;
        tmp.persist_noclobber(dest).map_err(|e| {
            if e.error.kind() == std::io::ErrorKind::AlreadyExists {
                FileError::Exists
            } else {
                FileError::io("saving the file")(e.error)
            }
        })?;
        Ok(())
    }

    /// Deletes the part file.
    pub fn remove(self) -> Result<(), FileError> {
        drop(self.file);
        match std::fs::remove_file(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(FileError::io("deleting a part file")(e)),
        }
    }
}

/// The sender's view of the file being offered: size and SHA-256 (streamed; memory
/// stays flat), and chunk reads.
pub struct Source {
    file: File,
    layout: Layout,
}

impl Source {
    /// Opens `path` and hashes it.
    pub fn hash(path: &Path) -> Result<(u64, [u8; 32]), FileError> {
        let mut f = File::open(path).map_err(FileError::io("opening the file to send"))?;
        let meta = f
            .metadata()
            .map_err(FileError::io("reading the file to send"))?;
        if !meta.is_file() {
            return Err(FileError::NotAFile);
        }
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        let mut size = 0u64;
        loop {
            let n = f
                .read(&mut buf)
                .map_err(FileError::io("reading the file to send"))?;
            if n == 0 {
                break;
            }
            size += n as u64;
            h.update(&buf[..n]);
        }
        Ok((size, h.finalize().into()))
    }

    /// Opens `path` for sending; refuses a file whose size changed since the offer.
    pub fn open(path: &Path, layout: Layout) -> Result<Source, FileError> {
        let mut file = File::open(path).map_err(|_| FileError::SourceChanged)?;
        let len = file
            .seek(SeekFrom::End(0))
            .map_err(|_| FileError::SourceChanged)?;
        if len != layout.size {
            return Err(FileError::SourceChanged);
        }
        Ok(Source { file, layout })
    }

    /// Reads chunk `index`.
    pub fn read_chunk(&self, index: u64) -> Result<Vec<u8>, FileError> {
        let len = self.layout.chunk_len(index).ok_or(FileError::BadChunk)?;
        let mut buf = vec![0u8; len];
        self.file
            .read_exact_at(&mut buf, self.layout.offset(index))
            .map_err(|_| FileError::SourceChanged)?;
        Ok(buf)
    }
}

#[cfg(test)]
mod test {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn layout(size: u64) -> Layout {
        Layout {
            size,
            chunk_size: 1000,
        }
    }

    #[test]
    fn layout_math() {
        assert_eq!(layout(0).chunks(), 0);
        assert_eq!(layout(1).chunks(), 1);
        assert_eq!(layout(1000).chunks(), 1);
        assert_eq!(layout(2001).chunks(), 3);
        assert_eq!(layout(2001).chunk_len(2), Some(1));
        assert_eq!(layout(2001).chunk_len(3), None);
    }

    #[test]
    fn round_trip_out_of_order_and_rewrites() {
        let d = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..2500u32).map(|i| (i * 7) as u8).collect();
        let (name, key) = new_part();
        let p = PartFile::open(d.path(), &name, &key, [1; 16], layout(2500)).unwrap();
        for i in [2u64, 0, 1, 1] {
            let s = (i * 1000) as usize;
            p.write_chunk(i, &data[s..(s + 1000).min(2500)]).unwrap();
        }
        p.sync().unwrap();
        // Wrong length, past the end.
        assert!(matches!(
            p.write_chunk(2, &[0; 1000]),
            Err(FileError::BadChunk)
        ));
        assert!(matches!(
            p.write_chunk(3, &[0; 1]),
            Err(FileError::BadChunk)
        ));
        let want: [u8; 32] = Sha256::digest(&data).into();
        assert_eq!(p.sha256().unwrap(), want);
        // At rest the bytes are not there in clear.
        let raw = std::fs::read(p.path()).unwrap();
        assert!(!raw.windows(64).any(|w| w == &data[100..164]));
        let out = d.path().join("out.bin");
        p.export(&out, &want).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), data);
        // Never replaces an existing file; a wrong hash leaves nothing.
        assert!(matches!(p.export(&out, &want), Err(FileError::Exists)));
        let other = d.path().join("other.bin");
        assert!(matches!(
            p.export(&other, &[0; 32]),
            Err(FileError::HashMismatch)
        ));
        assert!(!other.exists());
        let leftovers = std::fs::read_dir(d.path()).unwrap().count();
        assert_eq!(leftovers, 2, "part file and out.bin only");
    }

    #[test]
    fn tampering_and_wrong_key_are_detected() {
        let d = tempfile::tempdir().unwrap();
        let (name, key) = new_part();
        let p = PartFile::open(d.path(), &name, &key, [1; 16], layout(1500)).unwrap();
        p.write_chunk(0, &[5; 1000]).unwrap();
        p.write_chunk(1, &[6; 500]).unwrap();
        // Another transfer id (AAD) or key cannot read it.
        let q = PartFile::open(d.path(), &name, &key, [2; 16], layout(1500)).unwrap();
        assert!(matches!(q.read_chunk(0), Err(FileError::Corrupt { .. })));
        let other = [0u8; 32];
        let r = PartFile::open(d.path(), &name, &other, [1; 16], layout(1500)).unwrap();
        assert!(matches!(r.read_chunk(0), Err(FileError::Corrupt { .. })));
        // Flip a byte of slot 1.
        let f = OpenOptions::new().write(true).open(p.path()).unwrap();
        f.write_all_at(&[0xff], 1028 + 20).unwrap();
        assert!(p.read_chunk(0).is_ok());
        assert!(matches!(p.read_chunk(1), Err(FileError::Corrupt { .. })));
        p.remove().unwrap();
    }

    #[test]
    fn source_reads_and_notices_changes() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("f");
        std::fs::write(&path, vec![9u8; 2001]).unwrap();
        let (size, sha) = Source::hash(&path).unwrap();
        assert_eq!(size, 2001);
        assert_eq!(sha, <[u8; 32]>::from(Sha256::digest(vec![9u8; 2001])));
        let s = Source::open(&path, layout(2001)).unwrap();
        assert_eq!(s.read_chunk(2).unwrap(), vec![9]);
        assert!(matches!(
            Source::open(&path, layout(2000)),
            Err(FileError::SourceChanged)
        ));
        assert!(matches!(Source::hash(d.path()), Err(FileError::NotAFile)));
    }
}
