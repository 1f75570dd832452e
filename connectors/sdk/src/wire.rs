//! The bincode configuration of everything the SDK decodes from untrusted bytes.

/// Largest encoded batch or request the SDK decodes (2 GiB, the most a variable-length column
/// can hold). Bincode checks every claimed length against it before allocating, so a damaged
/// length field is an error, not an allocation failure.
pub const MAX_DECODE_BYTES: usize = 1 << 31;

/// Bincode 2 standard configuration with the decode limit.
pub(crate) fn decode_config() -> bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<MAX_DECODE_BYTES>,
> {
    bincode::config::standard().with_limit::<MAX_DECODE_BYTES>()
}

/// Bincode 2 standard configuration, for encoding.
pub(crate) fn encode_config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Encodes a value with the SDK's configuration.
pub fn encode<T: serde::Serialize>(value: &T) -> crate::Result<Vec<u8>> {
    bincode::serde::encode_to_vec(value, encode_config())
        .map_err(|e| crate::Error::Encode(format!("{}: {e}", std::any::type_name::<T>())))
}

/// Decodes a value encoded by [`encode`]; trailing bytes are an error.
pub fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> crate::Result<T> {
    let name = std::any::type_name::<T>();
    let (value, used): (T, usize) = bincode::serde::decode_from_slice(bytes, decode_config())
        .map_err(|e| crate::Error::Decode(format!("{name}: {e}")))?;
    if used != bytes.len() {
        return Err(crate::Error::Decode(format!(
            "{name}: {} trailing bytes",
            bytes.len() - used
        )));
    }
    Ok(value)
}
