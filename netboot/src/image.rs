//! Images the server offers: verified before they are ever offered, served
//! from a file handle (or memory) that stays the same for a session even
//! if the file on disk is replaced.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bootimage::Header;

use crate::wire::Offer;

/// Smallest image the deployed client accepts.
pub const MIN_CLIENT_SIZE: u64 = bootimage::NETBOOT_MIN_SIZE;

/// A network-booted image's size must be a multiple of this (see
/// [`bootimage::NETBOOT_ALIGN`]); [`servable`] is where the server applies
/// the rule.
pub const BATCH_ALIGN: u64 = bootimage::NETBOOT_ALIGN;

/// Why an image cannot be offered.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(transparent)]
    Image(#[from] bootimage::Error),
    /// The deployed client could not boot it over the network
    /// ([`bootimage::Header::netboot_problem`]).
    #[error("{}: {problem}", path.display())]
    NotServable { path: PathBuf, problem: String },
}

/// Whether the deployed client can boot an image with this header over the
/// network: a valid header, at least 1 MiB, a whole number of 128 KiB
/// batches. Checked before an image is verified or offered.
pub fn servable(header: &Header, path: &Path) -> Result<(), ImageError> {
    header.check().map_err(|source| bootimage::Error::Header {
        path: path.to_owned(),
        source,
    })?;
    match header.netboot_problem() {
        Some(problem) => Err(ImageError::NotServable {
            path: path.to_owned(),
            problem,
        }),
        None => Ok(()),
    }
}

enum Bytes {
    /// A plain image file: the image starts at byte 4096.
    Plain(File),
    /// A compressed image inflated into an unlinked temporary file.
    Inflated(File),
    Memory(Arc<[u8]>),
}

/// Which file a loaded image came from, to notice when it is replaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileId {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: i64,
    mtime_nsec: i64,
}

impl FileId {
    pub fn of(path: &Path) -> io::Result<FileId> {
        let m = std::fs::metadata(path)?;
        Ok(FileId {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: m.mtime(),
            mtime_nsec: m.mtime_nsec(),
        })
    }
}

/// A verified image, ready to serve.
pub struct ServedImage {
    pub name: String,
    pub path: PathBuf,
    pub header: Header,
    pub offer: Offer,
    /// The source file's identity when it was loaded (none for memory).
    pub file_id: Option<FileId>,
    bytes: Bytes,
}

impl std::fmt::Debug for ServedImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServedImage")
            .field("name", &self.name)
            .field("path", &self.path)
            .field("image_size", &self.header.image_size)
            .finish()
    }
}

impl ServedImage {
    /// Loads and fully verifies the image at `path`: plain images are
    /// hashed in place, compressed ones inflated once into an unlinked
    /// temporary file and hashed on the way. Only a verified image is
    /// returned.
    pub fn load(name: &str, path: &Path) -> Result<ServedImage, ImageError> {
        let io_err = |op| move |e| ImageError::Image(bootimage::Error::io(path, op)(e));
        let file_id = FileId::of(path).map_err(io_err("stat"))?;
        let mut file = File::open(path).map_err(io_err("open"))?;
        let header = bootimage::read_header(&mut file, path)?;
        servable(&header, path)?;
        let bytes = if header.flags.compressed() {
            let tmp = tempfile::tempfile().map_err(io_err("create cache file"))?;
            let cache = Path::new("<inflate cache>");
            let mut w = BufWriter::with_capacity(1 << 20, &tmp);
            bootimage::unpack_payload(&header, &file, path, &mut w, cache, &|_| {})?;
            w.flush().map_err(io_err("write cache file"))?;
            drop(w);
            Bytes::Inflated(tmp)
        } else {
            bootimage::verify_payload(&header, &file, path, &|_| {})?;
            Bytes::Plain(file)
        };
        Ok(ServedImage {
            name: name.to_owned(),
            path: path.to_owned(),
            offer: offer_for(&header),
            header,
            file_id: Some(file_id),
            bytes,
        })
    }

    /// An image held in memory (for simulations and tests), made as
    /// `mkimage` would with the default dataset and a 4 GiB target; the
    /// same rules as [`ServedImage::load`] apply.
    pub fn from_memory(name: &str, image: Vec<u8>) -> Result<ServedImage, ImageError> {
        use sha2::Digest;
        let size = image.len() as u64;
        let header = Header::plain(size, size.max(4 << 30), sha2::Sha256::digest(&image).into());
        let path = PathBuf::from(format!("<memory:{name}>"));
        servable(&header, &path)?;
        Ok(ServedImage {
            name: name.to_owned(),
            path,
            offer: offer_for(&header),
            header,
            file_id: None,
            bytes: Bytes::Memory(image.into()),
        })
    }

    /// Uncompressed image bytes.
    pub fn size(&self) -> u64 {
        self.header.image_size
    }

    /// Fills `buf` from image offset `offset`; `offset + buf.len()` must be
    /// within the image.
    pub fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        match &self.bytes {
            Bytes::Plain(f) => f.read_exact_at(buf, offset + bootimage::header::HEADER_LEN as u64),
            Bytes::Inflated(f) => f.read_exact_at(buf, offset),
            Bytes::Memory(m) => {
                let start = usize::try_from(offset).map_err(io::Error::other)?;
                let src = m
                    .get(start..start + buf.len())
                    .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
                buf.copy_from_slice(src);
                Ok(())
            }
        }
    }
}

/// The OFFER for a header: target size, uncompressed size, checksum and
/// the NUL-padded dataset.
pub fn offer_for(h: &Header) -> Offer {
    let mut dataset = [0u8; 128];
    let name = h.dataset.as_str().as_bytes();
    dataset[..name.len()].copy_from_slice(name);
    Offer {
        ramdisk_size: h.target_size,
        data_size: h.image_size,
        sha256: h.sha256,
        dataset,
    }
}

/// What the catalog says about a sled.
#[derive(Debug, Clone)]
pub enum Choice {
    Serve(Arc<ServedImage>),
    /// The configuration refuses this MAC.
    Refused,
    /// The sled's image could not be loaded (missing or corrupt).
    Unavailable {
        image: String,
    },
}

/// One configured image and its current state.
struct Slot {
    name: String,
    path: Option<PathBuf>,
    current: Option<Arc<ServedImage>>,
    /// Identity of the file last tried, loaded or not, so that a broken
    /// file is not re-read until it changes.
    tried: Option<FileId>,
    /// A reload under way on a thread of its own.
    loading: Option<std::sync::mpsc::Receiver<Result<ServedImage, ImageError>>>,
}

/// The images on offer and which sled gets which.
pub struct Catalog {
    slots: Vec<Slot>,
    sleds: Vec<(crate::wire::Mac, usize)>,
    default: Option<usize>,
}

/// One image of a [`Catalog`] and who gets it.
pub struct CatalogEntry {
    pub name: String,
    pub image: Option<Arc<ServedImage>>,
    pub macs: Vec<crate::wire::Mac>,
    /// Every MAC not assigned elsewhere gets it.
    pub default: bool,
}

/// A change the catalog noticed on disk.
#[derive(Debug)]
pub enum Reload {
    Loaded { image: String, path: PathBuf },
    Failed { image: String, error: String },
}

impl Catalog {
    /// An empty catalog: refuses every sled.
    pub fn new() -> Catalog {
        Catalog {
            slots: Vec::new(),
            sleds: Vec::new(),
            default: None,
        }
    }

    /// Adds an image loaded from `path` (verified now); returns its index.
    pub fn add_file(&mut self, name: &str, path: &Path) -> Result<usize, ImageError> {
        let img = ServedImage::load(name, path)?;
        let tried = img.file_id;
        self.slots.push(Slot {
            name: name.to_owned(),
            path: Some(path.to_owned()),
            current: Some(Arc::new(img)),
            tried,
            loading: None,
        });
        Ok(self.slots.len() - 1)
    }

    /// Adds an image held in memory; returns its index.
    pub fn add(&mut self, img: ServedImage) -> usize {
        self.slots.push(Slot {
            name: img.name.clone(),
            path: None,
            current: Some(Arc::new(img)),
            tried: None,
            loading: None,
        });
        self.slots.len() - 1
    }

    /// What is on offer, in the order added: each image's name, the image
    /// (none if withdrawn), the MACs assigned to it, and whether unknown
    /// MACs get it.
    pub fn entries(&self) -> Vec<CatalogEntry> {
        self.slots
            .iter()
            .enumerate()
            .map(|(i, slot)| CatalogEntry {
                name: slot.name.clone(),
                image: slot.current.clone(),
                macs: self
                    .sleds
                    .iter()
                    .filter(|&&(_, j)| j == i)
                    .map(|&(m, _)| m)
                    .collect(),
                default: self.default == Some(i),
            })
            .collect()
    }

    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.slots.iter().position(|s| s.name == name)
    }

    /// Serves image `index` to `mac`.
    pub fn assign(&mut self, mac: crate::wire::Mac, index: usize) {
        self.sleds.retain(|(m, _)| *m != mac);
        self.sleds.push((mac, index));
    }

    /// Serves image `index` to every MAC not assigned; `None` refuses them.
    pub fn set_default(&mut self, index: Option<usize>) {
        self.default = index;
    }

    /// Makes image `index` unavailable (as if its file were gone).
    pub fn withdraw(&mut self, index: usize) {
        if let Some(s) = self.slots.get_mut(index) {
            s.current = None;
        }
    }

    pub fn choose(&self, mac: crate::wire::Mac) -> Choice {
        let index = self
            .sleds
            .iter()
            .find(|(m, _)| *m == mac)
            .map(|&(_, i)| i)
            .or(self.default);
        match index.and_then(|i| self.slots.get(i)) {
            None => Choice::Refused,
            Some(slot) => match &slot.current {
                Some(img) => Choice::Serve(img.clone()),
                None => Choice::Unavailable {
                    image: slot.name.clone(),
                },
            },
        }
    }

    /// Reloads every image whose file changed on disk. Verifying a large
    /// image takes a while, so it happens on a thread of its own: until the
    /// new file is verified, the image already on offer stays on offer, and
    /// serving never stops. A file that fails verification is withdrawn
    /// (never offered) until it changes again; sessions already running
    /// keep the image they were offered. Call it about once a second; it
    /// reports loads that finished since the last call.
    pub fn refresh(&mut self) -> Vec<Reload> {
        let mut out = Vec::new();
        for slot in &mut self.slots {
            let Some(path) = &slot.path else { continue };
            if let Some(rx) = &slot.loading {
                match rx.try_recv() {
                    Ok(Ok(img)) => {
                        slot.tried = img.file_id;
                        slot.current = Some(Arc::new(img));
                        out.push(Reload::Loaded {
                            image: slot.name.clone(),
                            path: path.clone(),
                        });
                    }
                    Ok(Err(e)) => {
                        slot.current = None;
                        out.push(Reload::Failed {
                            image: slot.name.clone(),
                            error: e.to_string(),
                        });
                    }
                    Err(std::sync::mpsc::TryRecvError::Empty) => continue,
                    Err(std::sync::mpsc::TryRecvError::Disconnected) => {}
                }
                slot.loading = None;
                continue;
            }
            let id = FileId::of(path).ok();
            if id == slot.tried {
                continue;
            }
            slot.tried = id;
            let (tx, rx) = std::sync::mpsc::channel();
            let (name, path) = (slot.name.clone(), path.clone());
            std::thread::spawn(move || {
                let _ = tx.send(ServedImage::load(&name, &path));
            });
            slot.loading = Some(rx);
        }
        out
    }

    /// Waits for reloads under way to finish (for tests and shutdown).
    pub fn settle(&mut self) -> Vec<Reload> {
        let mut out = Vec::new();
        while self.slots.iter().any(|s| s.loading.is_some()) {
            out.extend(self.refresh());
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        out
    }
}

impl Default for Catalog {
    fn default() -> Catalog {
        Catalog::new()
    }
}
