//! A minimal IRC client: connect, register (`NICK`/`USER`), optionally `JOIN` a channel,
//! `PRIVMSG` one line, `QUIT`. Plain TCP, as LAVA's notifier.

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// LAVA's notifier nick.
pub const NICK: &str = "lava-bot";
/// The IRC port used when the server has none (`host` rather than `host:port`).
pub const DEFAULT_PORT: u16 = 6667;

/// Sends `text` to `target` (a nick, or a `#channel`, which is joined first) on `server`
/// (`host` or `host:port`). Returns once the server has closed the connection after `QUIT`,
/// so the message was processed.
pub async fn send(server: &str, target: &str, text: &str) -> Result<(), String> {
    let address = if server
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        server.to_owned()
    } else {
        format!("{server}:{DEFAULT_PORT}")
    };
    let stream = TcpStream::connect(&address)
        .await
        .map_err(|e| format!("cannot connect to IRC server {address}: {e}"))?;
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    let io = |e: std::io::Error| format!("IRC connection to {address}: {e}");
    let mut nick = NICK.to_owned();
    write
        .write_all(format!("NICK {nick}\r\nUSER {NICK} 0 * :lavabox notifications\r\n").as_bytes())
        .await
        .map_err(io)?;
    // Registration: answer PINGs, pick another nick if ours is taken.
    loop {
        let Some(line) = lines.next_line().await.map_err(io)? else {
            return Err(format!(
                "IRC server {address} closed the connection during registration"
            ));
        };
        let mut words = line.split(' ');
        let first = words.next().unwrap_or_default();
        if first == "PING" {
            let token = line.get(5..).unwrap_or_default();
            write
                .write_all(format!("PONG {token}\r\n").as_bytes())
                .await
                .map_err(io)?;
            continue;
        }
        if first == "ERROR" {
            return Err(format!("IRC server {address} refused: {line}"));
        }
        match words.next().unwrap_or_default() {
            "001" => break,
            "433" | "436" => {
                nick = format!("{NICK}{}", nick.len());
                write
                    .write_all(format!("NICK {nick}\r\n").as_bytes())
                    .await
                    .map_err(io)?;
            }
            "432" | "465" => return Err(format!("IRC server {address} refused: {line}")),
            _ => {}
        }
    }
    let text: String = text.chars().filter(|c| *c != '\r' && *c != '\n').collect();
    let mut out = String::new();
    if target.starts_with('#') || target.starts_with('&') {
        out.push_str(&format!("JOIN {target}\r\n"));
    }
    out.push_str(&format!("PRIVMSG {target} :{text}\r\nQUIT :done\r\n"));
    write.write_all(out.as_bytes()).await.map_err(io)?;
    // Wait for the server to close: it has then handled every command before QUIT.
    while let Some(line) = lines.next_line().await.map_err(io)? {
        let code = line.split(' ').nth(1).unwrap_or_default();
        if matches!(code, "401" | "403" | "404") {
            return Err(format!("IRC server {address}: {line}"));
        }
    }
    Ok(())
}
