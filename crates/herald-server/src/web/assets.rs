//! The embedded files and the URLs they answer at.

/// What a file is, which decides its content type and security headers.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Html,
    Script,
    /// A service worker: a script that may control pages above its own folder.
    ServiceWorker,
    Types,
    Css,
}

pub struct Asset {
    pub urls: &'static [&'static str],
    pub kind: Kind,
    pub body: &'static [u8],
}

macro_rules! asset {
    ($kind:ident, $file:literal, [$($url:literal),+]) => {
        Asset {
            urls: &[$($url),+],
            kind: Kind::$kind,
            body: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/web/", $file)),
        }
    };
}

pub static ASSETS: &[Asset] = &[
    // The SDK: what product pages import.
    asset!(Script, "sdk/herald.js", ["/sdk/herald.js"]),
    asset!(Script, "sdk/herald-link.js", ["/sdk/herald-link.js"]),
    asset!(Types, "sdk/herald.d.ts", ["/sdk/herald.d.ts"]),
    asset!(Script, "sdk/herald-bell.js", ["/sdk/herald-bell.js"]),
    asset!(Types, "sdk/herald-bell.d.ts", ["/sdk/herald-bell.d.ts"]),
    asset!(ServiceWorker, "sdk/herald-sw.js", ["/sdk/herald-sw.js"]),
    asset!(Script, "sdk/herald-channel.js", ["/sdk/herald-channel.js"]),
    asset!(
        Types,
        "sdk/herald-channel.d.ts",
        ["/sdk/herald-channel.d.ts"]
    ),
    // The bell demo.
    asset!(Html, "demo/index.html", ["/demo", "/demo/"]),
    asset!(Script, "demo/demo.js", ["/demo/demo.js"]),
    asset!(Css, "demo/demo.css", ["/demo/demo.css"]),
    // The admin console.
    asset!(Html, "admin/index.html", ["/admin", "/admin/"]),
    asset!(Css, "admin/admin.css", ["/admin/admin.css"]),
    asset!(Script, "admin/app.js", ["/admin/app.js"]),
    asset!(Script, "admin/api.js", ["/admin/api.js"]),
    asset!(Script, "admin/dom.js", ["/admin/dom.js"]),
    asset!(Script, "admin/chart.js", ["/admin/chart.js"]),
    asset!(Script, "admin/overview.js", ["/admin/overview.js"]),
    asset!(Script, "admin/campaigns.js", ["/admin/campaigns.js"]),
    asset!(Script, "admin/new-campaign.js", ["/admin/new-campaign.js"]),
    asset!(Script, "admin/users.js", ["/admin/users.js"]),
];
