//! Images shown inline after saving: decoded in pure Rust (`image`) with
//! limits on file size, dimensions and memory, scaled down once, cached as
//! a texture per transfer. A file that fails to decode shows a line saying
//! so, never a crash.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use eframe::egui;

/// Largest image file decoded, in bytes.
pub const MAX_FILE: u64 = 32 * 1024 * 1024;
/// Largest width or height decoded, in pixels.
pub const MAX_SIDE: u32 = 12_000;
/// Width of the shown preview, in pixels.
const PREVIEW: u32 = 480;

/// Decoded previews by transfer id and path.
#[derive(Default)]
pub struct Cache {
    previews: HashMap<(String, PathBuf), Result<egui::TextureHandle, String>>,
}

impl Cache {
    /// Shows the preview of transfer `id` saved at `path`.
    pub fn show(&mut self, ui: &mut egui::Ui, id: &str, path: &Path, name: &str) {
        let entry = self
            .previews
            .entry((id.to_owned(), path.to_path_buf()))
            .or_insert_with(|| {
                decode(path).map(|img| {
                    ui.ctx().load_texture(
                        format!("preview-{id}"),
                        img,
                        egui::TextureOptions::LINEAR,
                    )
                })
            });
        match entry {
            Ok(tex) => {
                let alt = format!("Image {}", crate::format::line(name));
                ui.add(
                    egui::Image::new(egui::load::SizedTexture::from_handle(tex))
                        .max_width(PREVIEW as f32)
                        .alt_text(alt),
                );
            }
            Err(e) => {
                ui.label(format!("(no preview: {e})"));
            }
        }
    }
}

/// Decodes `path` into a preview at most [`PREVIEW`] pixels wide.
pub fn decode(path: &Path) -> Result<egui::ColorImage, String> {
    let len = std::fs::metadata(path).map_err(|e| e.to_string())?.len();
    if len > MAX_FILE {
        return Err("the file is too large to preview".into());
    }
    let mut reader = image::ImageReader::open(path)
        .and_then(|r| r.with_guessed_format())
        .map_err(|e| e.to_string())?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(512 * 1024 * 1024);
    reader.limits(limits);
    let img = reader.decode().map_err(|e| e.to_string())?;
    let img = if img.width() > PREVIEW {
        img.resize(PREVIEW, MAX_SIDE, image::imageops::FilterType::Triangle)
    } else {
        img
    };
    let rgba = img.to_rgba8();
    let size = [rgba.width() as usize, rgba.height() as usize];
    Ok(egui::ColorImage::from_rgba_unmultiplied(
        size,
        rgba.as_raw(),
    ))
}

/// The media type to announce for `path` (by extension).
pub fn media_of(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "png" | "jpg" | "jpeg" | "gif" | "webp" => "image",
        "ogg" | "opus" | "m4a" | "mp3" | "wav" => "voice",
        "mp4" | "webm" | "mkv" | "mov" => "video",
        _ => "file",
    }
}

/// Where files are saved by default: `XDG_DOWNLOAD_DIR`, `~/Downloads` if
/// it exists, else the home directory.
pub fn download_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("XDG_DOWNLOAD_DIR").map(PathBuf::from)
        && d.is_absolute()
        && d.is_dir()
    {
        return d;
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"));
    let dl = home.join("Downloads");
    if dl.is_dir() { dl } else { home }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn hostile_images_fail_cleanly() {
        let dir = tempfile::tempdir().map_err(|e| e.to_string());
        let Ok(dir) = dir else { return };
        let junk = dir.path().join("x.png");
        std::fs::write(&junk, b"\x89PNG\r\n\x1a\nnot really").ok();
        assert!(decode(&junk).is_err());
        // A PNG header claiming 100000 x 100000 pixels is refused by the limits.
        let mut big = image::RgbaImage::new(1, 1);
        big.put_pixel(0, 0, image::Rgba([1, 2, 3, 255]));
        let ok = dir.path().join("ok.png");
        big.save(&ok).ok();
        assert_eq!(decode(&ok).map(|i| i.size), Ok([1, 1]));
        assert_eq!(media_of(Path::new("/a/B.JPG")), "image");
        assert_eq!(media_of(Path::new("/a/b")), "file");
    }
}
