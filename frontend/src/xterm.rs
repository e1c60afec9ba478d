//! Bindings to xterm.js, the terminal emulator of the Console tab.
//!
//! The site serves `@xterm/xterm`'s UMD build as `/vendor/xterm.js` (copied from npm by
//! `frontend/vendor.sh`); loaded as a classic script it defines the global `Terminal` class.

use wasm_bindgen::prelude::*;

#[wasm_bindgen]
extern "C" {
    /// An xterm.js terminal (`new Terminal(options)`).
    pub type Terminal;

    /// Creates a terminal; fails when `/vendor/xterm.js` did not load.
    #[wasm_bindgen(constructor, catch)]
    pub fn new(options: &JsValue) -> Result<Terminal, JsValue>;

    /// Renders the terminal into `parent`.
    #[wasm_bindgen(method)]
    pub fn open(this: &Terminal, parent: &web_sys::HtmlElement);

    /// Writes raw output bytes (UTF-8, with escape sequences).
    #[wasm_bindgen(method, js_name = write)]
    pub fn write_bytes(this: &Terminal, data: &js_sys::Uint8Array);

    /// Writes text.
    #[wasm_bindgen(method, js_name = write)]
    pub fn write_text(this: &Terminal, data: &str);

    /// Clears screen and scroll-back and resets all modes.
    #[wasm_bindgen(method)]
    pub fn reset(this: &Terminal);

    /// Moves the keyboard focus into the terminal.
    #[wasm_bindgen(method)]
    pub fn focus(this: &Terminal);

    /// Removes the terminal from the page and frees it.
    #[wasm_bindgen(method)]
    pub fn dispose(this: &Terminal);

    /// Calls `listener` with the text the user types (keys already translated, Enter = `\r`).
    #[wasm_bindgen(method, js_name = onData)]
    pub fn on_data(this: &Terminal, listener: &js_sys::Function) -> Disposable;
}

#[wasm_bindgen]
extern "C" {
    /// A registration returned by xterm.js's event methods.
    pub type Disposable;

    /// Ends the registration.
    #[wasm_bindgen(method, js_name = dispose)]
    pub fn dispose(this: &Disposable);
}

/// The options Kiln opens terminals with.
pub fn options() -> JsValue {
    let options = serde_json::json!({
        "cursorBlink": true,
        "fontSize": 14,
        "fontFamily": "ui-monospace, 'DejaVu Sans Mono', Menlo, Consolas, monospace",
        "scrollback": 5000,
        "rows": 24,
        "cols": 80,
        "theme": { "background": "#000000", "foreground": "#e5e5e5" },
    });
    js_sys::JSON::parse(&options.to_string()).unwrap_or(JsValue::UNDEFINED)
}
