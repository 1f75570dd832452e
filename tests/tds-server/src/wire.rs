//! TDS framing: messages made of packets (headers from `tds-protocol`), the PRELOGIN answer
//! (no TLS: ENCRYPT_NOT_SUP) and the LOGIN7 record, which `tds-protocol` only encodes.

use bytes::{BufMut, BytesMut};
use tds_protocol::{PACKET_HEADER_SIZE, PacketHeader, PacketStatus, PacketType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::error::{Error, Result};
use crate::types::Reader;

/// One client message: its packet type and the concatenated payloads.
pub(crate) struct Message {
    pub kind: u8,
    pub body: Vec<u8>,
}

/// Reads packets until end-of-message. `None` when the client closed the connection.
pub(crate) async fn read_message<R: AsyncReadExt + Unpin>(r: &mut R) -> Result<Option<Message>> {
    let mut body = Vec::new();
    let mut kind = None;
    loop {
        let mut head = [0u8; PACKET_HEADER_SIZE];
        match r.read_exact(&mut head).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && kind.is_none() => {
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        }
        let ty = head[0];
        let status = head[1];
        let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
        if len < PACKET_HEADER_SIZE {
            return Err(Error::Protocol(format!(
                "packet length {len} shorter than its header"
            )));
        }
        let start = body.len();
        body.resize(start + len - PACKET_HEADER_SIZE, 0);
        r.read_exact(&mut body[start..]).await?;
        kind.get_or_insert(ty);
        if status & 0x01 != 0 {
            return Ok(Some(Message {
                kind: kind.unwrap_or(ty),
                body,
            }));
        }
    }
}

/// Writes `payload` as a tabular-result message split into packets of `packet_size`.
pub(crate) async fn write_message<W: AsyncWriteExt + Unpin>(
    w: &mut W,
    payload: &[u8],
    packet_size: usize,
) -> Result<()> {
    let chunk = packet_size.max(512) - PACKET_HEADER_SIZE;
    let mut out = BytesMut::with_capacity(payload.len() + (payload.len() / chunk + 1) * 8);
    let mut chunks = payload.chunks(chunk).peekable();
    let mut id: u8 = 1;
    if payload.is_empty() {
        let h = PacketHeader::new(
            PacketType::TabularResult,
            PacketStatus::END_OF_MESSAGE,
            PACKET_HEADER_SIZE as u16,
        )
        .with_packet_id(id);
        h.encode(&mut out);
    }
    while let Some(c) = chunks.next() {
        let status = if chunks.peek().is_none() {
            PacketStatus::END_OF_MESSAGE
        } else {
            PacketStatus::NORMAL
        };
        let h = PacketHeader::new(
            PacketType::TabularResult,
            status,
            (c.len() + PACKET_HEADER_SIZE) as u16,
        )
        .with_packet_id(id)
        .with_spid(51);
        h.encode(&mut out);
        out.put_slice(c);
        id = id.wrapping_add(1);
    }
    w.write_all(&out).await?;
    w.flush().await?;
    Ok(())
}

/// The PRELOGIN answer: version, ENCRYPT_NOT_SUP, instance accepted, no thread id, no MARS.
pub(crate) fn prelogin_response() -> Vec<u8> {
    // (option, data)
    let options: [(u8, Vec<u8>); 5] = [
        (0x00, vec![16, 0, 0x0F, 0xA0, 0, 0]), // version 16.0.4000
        (0x01, vec![0x02]),                    // ENCRYPT_NOT_SUP
        (0x02, vec![0x00]),                    // instance: valid
        (0x03, vec![]),                        // thread id: none
        (0x04, vec![0x00]),                    // MARS off
    ];
    let mut out = Vec::new();
    let mut offset = (options.len() * 5 + 1) as u16;
    for (opt, data) in &options {
        out.push(*opt);
        out.extend_from_slice(&offset.to_be_bytes());
        out.extend_from_slice(&(data.len() as u16).to_be_bytes());
        offset += data.len() as u16;
    }
    out.push(0xFF);
    for (_, data) in &options {
        out.extend_from_slice(data);
    }
    out
}

/// What a LOGIN7 record says that this server uses.
pub(crate) struct Login {
    pub tds_version: u32,
    pub packet_size: u32,
    pub user: String,
    pub password: String,
    pub database: String,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("user", &self.user)
            .field("database", &self.database)
            .finish_non_exhaustive()
    }
}

/// Parses LOGIN7 (MS-TDS 2.2.6.4): fixed header, then offset/length pairs into the data.
pub(crate) fn parse_login7(body: &[u8]) -> Result<Login> {
    let mut r = Reader::new(body);
    let _len = r.u32()?;
    let tds_version = r.u32()?;
    let packet_size = r.u32()?;
    let field = |at: usize| -> Result<String> {
        let mut h = Reader::new(body);
        h.pos = at;
        let off = usize::from(h.u16()?);
        let chars = usize::from(h.u16()?);
        let mut d = Reader::new(body);
        d.pos = off;
        let bytes = d.take(chars * 2)?;
        let units: Vec<u16> = bytes
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        String::from_utf16(&units).map_err(|_| Error::Protocol("LOGIN7 field is not UTF-16".into()))
    };
    let user = field(40)?;
    let password_field = {
        let mut h = Reader::new(body);
        h.pos = 44;
        let off = usize::from(h.u16()?);
        let chars = usize::from(h.u16()?);
        let mut d = Reader::new(body);
        d.pos = off;
        let bytes: Vec<u8> = d
            .take(chars * 2)?
            .iter()
            .map(|b| {
                let x = b ^ 0xA5;
                x.rotate_left(4)
            })
            .collect();
        let units: Vec<u16> = bytes
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        String::from_utf16(&units)
            .map_err(|_| Error::Protocol("LOGIN7 password is not UTF-16".into()))?
    };
    let database = field(68)?;
    Ok(Login {
        tds_version,
        packet_size,
        user,
        password: password_field,
        database,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prelogin_answer_declines_encryption() {
        let p = prelogin_response();
        let decoded = tds_protocol::PreLogin::decode(&p[..]).unwrap();
        assert_eq!(
            decoded.encryption,
            tds_protocol::EncryptionLevel::NotSupported
        );
    }

    #[test]
    fn login7_fields_are_read_back() {
        let login = tds_protocol::Login7::new()
            .with_sql_auth("sa", "Secret#123")
            .with_database("tienda_01")
            .with_packet_size(8192);
        let body = login.encode();
        let parsed = parse_login7(&body).unwrap();
        assert_eq!(parsed.user, "sa");
        assert_eq!(parsed.password, "Secret#123");
        assert_eq!(parsed.database, "tienda_01");
        assert_eq!(parsed.packet_size, 8192);
        assert!(!format!("{parsed:?}").contains("Secret"));
    }
}
