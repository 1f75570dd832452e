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

/// CRC-64 (Jones polynomial, reflected, initial value 0): the checksum of DUMP payloads.
const CRC_TABLE: [u64; 256] = {
    let mut table = [0u64; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u64;
        let mut bit = 0;
        while bit < 8 {
            c = if c & 1 == 1 {
                (c >> 1) ^ 0x95ac_9329_ac4b_c9b5
            } else {
                c >> 1
            };
            bit += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

/// [`CRC_TABLE`] extended for eight bytes at a time ("slicing-by-8"): `SLICES[k][b]` is the
/// CRC of byte `b` followed by `k` zero bytes. A row's payload is checksummed on every write,
/// and a byte at a time cost as much as building the payload.
const SLICES: [[u64; 256]; 8] = {
    let mut t = [[0u64; 256]; 8];
    t[0] = CRC_TABLE;
    let mut k = 1;
    while k < 8 {
        let mut i = 0;
        while i < 256 {
            let prev = t[k - 1][i];
            t[k][i] = (prev >> 8) ^ CRC_TABLE[(prev & 0xff) as usize];
            i += 1;
        }
        k += 1;
    }
    t
};

pub(crate) fn crc64(data: &[u8]) -> u64 {
    let mut words = data.chunks_exact(8);
    let mut c = 0u64;
    for w in &mut words {
        let mut word = [0u8; 8];
        word.copy_from_slice(w);
        let x = c ^ u64::from_le_bytes(word);
        c = SLICES[7][(x & 0xff) as usize]
            ^ SLICES[6][((x >> 8) & 0xff) as usize]
            ^ SLICES[5][((x >> 16) & 0xff) as usize]
            ^ SLICES[4][((x >> 24) & 0xff) as usize]
            ^ SLICES[3][((x >> 32) & 0xff) as usize]
            ^ SLICES[2][((x >> 40) & 0xff) as usize]
            ^ SLICES[1][((x >> 48) & 0xff) as usize]
            ^ SLICES[0][(x >> 56) as usize];
    }
    words.remainder().iter().fold(c, |c, &b| {
        CRC_TABLE[((c ^ u64::from(b)) & 0xff) as usize] ^ (c >> 8)
    })
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
        // Eight bytes at a time gives what one at a time gives, at every length and offset.
        let bytewise = |data: &[u8]| {
            data.iter().fold(0u64, |c, &b| {
                CRC_TABLE[((c ^ u64::from(b)) & 0xff) as usize] ^ (c >> 8)
            })
        };
        let data: Vec<u8> = (0..200u32).map(|i| (i * 37 + i / 7) as u8).collect();
        for start in 0..9 {
            for end in start..data.len() {
                assert_eq!(crc64(&data[start..end]), bytewise(&data[start..end]));
            }
        }
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
