//! Reading a VM's console until the test guest's banner shows: through the server's console
//! WebSocket (what the browser uses) or through the node API (`NodeClient::console`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::StreamExt;
use kiln_node_client::tokio_tungstenite::tungstenite::client::IntoClientRequest;
use kiln_node_client::tokio_tungstenite::tungstenite::Message;
use kiln_node_client::tokio_tungstenite::{self, WebSocketStream};
use kiln_node_client::NodeClient;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// What the test guest prints first.
pub const BANNER: &str = "Kiln test guest";

/// Accumulates console bytes; finds the banner line.
#[derive(Default)]
pub struct Transcript(Vec<u8>);

impl Transcript {
    /// Add bytes; the banner line once complete.
    pub fn push(&mut self, bytes: &[u8]) -> Option<String> {
        self.0.extend_from_slice(bytes);
        banner_line(&self.0)
    }

    /// Everything so far, lossily.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0).into_owned()
    }
}

/// The complete line holding the banner, if any.
pub fn banner_line(bytes: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(bytes);
    let at = text.find(BANNER)?;
    let rest = &text[at..];
    let end = rest.find(['\r', '\n'])?;
    Some(rest[..end].to_owned())
}

/// Read `ws` until the banner line shows (or `within` passes).
pub async fn read_banner<S>(ws: &mut WebSocketStream<S>, within: Duration) -> anyhow::Result<String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut seen = Transcript::default();
    let read = async {
        while let Some(msg) = ws.next().await {
            let bytes = match msg? {
                Message::Binary(b) => b.to_vec(),
                Message::Text(t) => t.as_bytes().to_vec(),
                Message::Close(_) => break,
                _ => continue,
            };
            if let Some(line) = seen.push(&bytes) {
                return Ok(line);
            }
        }
        bail!(
            "the console closed before the banner; it showed {:?}",
            seen.text()
        )
    };
    tokio::time::timeout(within, read)
        .await
        .context("no banner on the console in time")?
}

/// Open the console of `vmid` through the node API and wait for the banner (the scroll-back
/// comes first, so a banner printed before the attach counts when the attach happens).
pub async fn node_banner(
    client: &NodeClient,
    vmid: u32,
    within: Duration,
) -> anyhow::Result<(Instant, String)> {
    let mut ws = client.console(vmid).await?;
    let line = read_banner(&mut ws, within).await?;
    let at = Instant::now();
    let _ = ws.close(None).await;
    Ok((at, line))
}

/// The server's console WebSocket (`/api2/kiln/nodes/{node}/qemu/{vmid}/console`), with the
/// session cookie, as the browser opens it.
pub struct ServerConsole {
    /// Server port on 127.0.0.1.
    pub port: u16,
    /// Session ticket.
    pub ticket: String,
    tls: Arc<rustls::ClientConfig>,
}

impl ServerConsole {
    /// Trusting `ca_pem` only.
    pub fn new(port: u16, ticket: String, ca_pem: &str) -> anyhow::Result<Self> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pemfile::certs(&mut ca_pem.as_bytes()) {
            roots.add(cert?)?;
        }
        let mut tls = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(ServerConsole {
            port,
            ticket,
            tls: Arc::new(tls),
        })
    }

    /// Open the console of `vmid` on `node` and wait for the banner.
    pub async fn banner(
        &self,
        node: &str,
        vmid: u32,
        within: Duration,
    ) -> anyhow::Result<(Instant, String)> {
        let tcp = TcpStream::connect(("127.0.0.1", self.port)).await?;
        let _ = tcp.set_nodelay(true);
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1")?;
        let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
            .connect(name, tcp)
            .await?;
        let url = format!(
            "wss://127.0.0.1:{}/api2/kiln/nodes/{node}/qemu/{vmid}/console",
            self.port
        );
        let mut req = url.into_client_request()?;
        req.headers_mut()
            .insert("Cookie", format!("PVEAuthCookie={}", self.ticket).parse()?);
        let (mut ws, _) = match tokio_tungstenite::client_async(req, tls).await {
            Ok(ok) => ok,
            Err(tokio_tungstenite::tungstenite::Error::Http(res)) => {
                let body = res.body().as_deref().unwrap_or_default();
                bail!(
                    "console of VM {vmid}: HTTP {}: {}",
                    res.status(),
                    String::from_utf8_lossy(body)
                );
            }
            Err(e) => return Err(e.into()),
        };
        let line = read_banner(&mut ws, within).await?;
        let at = Instant::now();
        let _ = ws.close(None).await;
        Ok((at, line))
    }
}
