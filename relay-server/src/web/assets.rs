//! The page's files, built into the binary (`relay-server/web/`; the npm
//! packages under `vendor/` are pinned by its `package-lock.json` and
//! copied by `vendor.sh`), so the relay serves them with no CDN and no
//! files beside it.

/// One file: its path under `/assets/` (or `/` for the page), content type, bytes.
pub(crate) struct Asset {
    pub(crate) path: &'static str,
    pub(crate) content_type: &'static str,
    pub(crate) bytes: &'static [u8],
}

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";

macro_rules! asset {
    ($path:literal, $type:expr) => {
        Asset {
            path: $path,
            content_type: $type,
            bytes: include_bytes!(concat!("../../web/", $path)),
        }
    };
}

/// The page itself, served at `/`.
pub(crate) const PAGE: Asset = asset!("index.html", "text/html; charset=utf-8");

/// Everything under `/assets/`.
pub(crate) const ASSETS: &[Asset] = &[
    asset!("app.js", JS),
    asset!("app.css", CSS),
    asset!("vendor/xterm.js", JS),
    asset!("vendor/xterm.css", CSS),
    asset!("vendor/addon-fit.js", JS),
    asset!("vendor/addon-webgl.js", JS),
    asset!("vendor/asciinema-player.min.js", JS),
    asset!("vendor/asciinema-player.css", CSS),
    asset!("vendor/LICENSE.xterm", TEXT),
    asset!("vendor/LICENSE.xterm-addon-fit", TEXT),
    asset!("vendor/LICENSE.xterm-addon-webgl", TEXT),
    asset!("vendor/LICENSE.asciinema-player", TEXT),
    asset!("vendor/LICENSE.solid-js", TEXT),
];

/// The asset at `path` (after `/assets/`).
pub(crate) fn find(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.path == path)
}
