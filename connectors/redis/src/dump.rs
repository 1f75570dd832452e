//! Hash rows as `RESTORE` payloads: one argument the server copies in as it is, instead of an
//! `HSET` whose fields the server inserts one by one (about half the server's time per row).
//!
//! A payload is what `DUMP` returns for a small hash: the value type (16, a hash stored as a
//! listpack), the listpack as an RDB string, the RDB version (10, the first with listpack
//! hashes: Redis 7.0) and a CRC-64 (Jones) of all that. Servers of RDB version 10 or later
//! load it; whether this server does is probed once per connection ([`probe`]), and rows that
//! a server would not keep as a listpack under the default limits (more than 128 fields, or a
//! name or value longer than 64 bytes) are written with `HSET` instead.

/// Value type of a hash encoded as a listpack (`RDB_TYPE_HASH_LISTPACK`).
const TYPE_HASH_LISTPACK: u8 = 16;
/// RDB version written in the payloads.
const RDB_VERSION: u16 = 10;
/// Fields (name, value pairs) of a row written as a payload at most.
pub(crate) const MAX_FIELDS: usize = 128;
/// Bytes of a field name or value written in a payload at most.
pub(crate) const MAX_ENTRY: usize = 64;

/// CRC-64 (Jones polynomial, reflected, initial value 0, "CRC-64/REDIS"): the checksum of
/// DUMP payloads. A row's payload is checksummed on every write: sixteen bytes a table step.
static CRC64: crc::Crc<u64, crc::Table<16>> =
    crc::Crc::<u64, crc::Table<16>>::new(&crc::CRC_64_REDIS);

pub(crate) fn crc64(data: &[u8]) -> u64 {
    CRC64.checksum(data)
}

/// Builds a payload of one hash row: [`HashPayload::start`], a [`HashPayload::push`] per field
/// name and per value, then [`HashPayload::finish`].
#[derive(Debug, Default)]
pub(crate) struct HashPayload {
    /// The listpack being built (header first, patched by `finish`).
    lp: Vec<u8>,
    entries: usize,
    /// The payload of the last `finish`.
    out: Vec<u8>,
}

impl HashPayload {
    pub(crate) fn start(&mut self) {
        self.lp.clear();
        self.lp.extend_from_slice(&[0; 6]);
        self.entries = 0;
    }

    /// Appends one entry (a field name or a value); `false` when the entry is longer than
    /// [`MAX_ENTRY`] or the row has too many: write the row another way.
    pub(crate) fn push(&mut self, entry: &[u8]) -> bool {
        if entry.len() > MAX_ENTRY || self.entries >= 2 * MAX_FIELDS {
            return false;
        }
        // A string of under 64 bytes: 10xxxxxx, the bytes, then the entry's length (header
        // and bytes, under 128 here) as the one-byte back length.
        self.lp.push(0x80 | entry.len() as u8);
        self.lp.extend_from_slice(entry);
        self.lp.push(entry.len() as u8 + 1);
        self.entries += 1;
        true
    }

    /// The payload of the entries pushed since `start`.
    pub(crate) fn finish(&mut self) -> &[u8] {
        self.lp.push(0xff);
        let total = self.lp.len() as u32;
        self.lp[..4].copy_from_slice(&total.to_le_bytes());
        self.lp[4..6].copy_from_slice(&(self.entries as u16).to_le_bytes());
        self.out.clear();
        self.out.push(TYPE_HASH_LISTPACK);
        // The listpack as an RDB string: its length, then its bytes. At most 6 + 256 * 66 + 1
        // bytes.
        let len = self.lp.len();
        if len < 64 {
            self.out.push(len as u8);
        } else if len < 16384 {
            self.out.push(0x40 | (len >> 8) as u8);
            self.out.push((len & 0xff) as u8);
        } else {
            self.out.push(0x80);
            self.out.extend_from_slice(&(len as u32).to_be_bytes());
        }
        self.out.extend_from_slice(&self.lp);
        self.out.extend_from_slice(&RDB_VERSION.to_le_bytes());
        let crc = crc64(&self.out);
        self.out.extend_from_slice(&crc.to_le_bytes());
        &self.out
    }
}

/// Whether the server restores the payloads written here: one `RESTORE` of a one-field hash to
/// `key` (then deleted). A server too old, or a user not allowed `RESTORE`, refuses it.
pub(crate) async fn probe(
    conn: &mut redis::aio::MultiplexedConnection,
    key: &str,
) -> redis::RedisResult<bool> {
    let mut payload = HashPayload::default();
    payload.start();
    payload.push(b"probe");
    payload.push(b"1");
    let restored: redis::RedisResult<()> = redis::cmd("RESTORE")
        .arg(key)
        .arg(0)
        .arg(payload.finish())
        .arg("REPLACE")
        .exec_async(conn)
        .await;
    let value: Option<String> = match restored {
        Ok(()) => {
            redis::cmd("HGET")
                .arg(key)
                .arg("probe")
                .query_async(conn)
                .await?
        }
        Err(e) if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() => {
            return Err(e);
        }
        // Refused: an unknown type or version, or no permission.
        Err(_) => None,
    };
    redis::cmd("DEL").arg(key).exec_async(conn).await?;
    Ok(value.as_deref() == Some("1"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc64_is_the_jones_checksum_of_dump_payloads() {
        assert_eq!(crc64(b"123456789"), 0xe9c6_d914_c4b8_d9ca);
        assert_eq!(crc64(b""), 0);
    }

    #[test]
    fn payloads_are_what_dump_returns_for_string_entries() {
        // DUMP of a hash {name: "ab"} on Redis 7.0 (strings under 64 bytes).
        let mut p = HashPayload::default();
        p.start();
        assert!(p.push(b"name"));
        assert!(p.push(b"ab"));
        let out = p.finish().to_vec();
        let lp_len = 6 + (1 + 4 + 1) + (1 + 2 + 1) + 1;
        assert_eq!(out[0], 16);
        assert_eq!(out[1] as usize, lp_len);
        assert_eq!(&out[2..6], &(lp_len as u32).to_le_bytes());
        assert_eq!(&out[6..8], &[2, 0]);
        assert_eq!(&out[8..14], b"\x84name\x05");
        assert_eq!(&out[14..18], b"\x82ab\x03");
        assert_eq!(out[18], 0xff);
        assert_eq!(&out[19..21], &[10, 0]);
        let crc = crc64(&out[..21]);
        assert_eq!(&out[21..], &crc.to_le_bytes());
        // Large rows take the 32-bit length form.
        p.start();
        for _ in 0..2 * MAX_FIELDS {
            assert!(p.push(&[b'v'; MAX_ENTRY]));
        }
        let out = p.finish().to_vec();
        let lp_len = 6 + 2 * MAX_FIELDS * (MAX_ENTRY + 2) + 1;
        assert_eq!(out[1], 0x80);
        assert_eq!(&out[2..6], &(lp_len as u32).to_be_bytes());
        assert_eq!(out.len(), 1 + 5 + lp_len + 2 + 8);
        // Entries too long, or too many, are refused.
        p.start();
        assert!(!p.push(&[b'x'; MAX_ENTRY + 1]));
        for _ in 0..2 * MAX_FIELDS {
            assert!(p.push(b"f"));
        }
        assert!(!p.push(b"f"));
    }
}
