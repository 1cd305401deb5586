//! A reader for the clear-text header of an RFC 9420 `MLSMessage` (§6, §6.2, §6.3).
//!
//! The server never decrypts MLS traffic, but it must route it and enforce ordering: it needs the
//! group id, the epoch, the content type and the `authenticated_data` (which carries the franking
//! commitment, see `haven-frank`). All four are in the clear in both `PublicMessage` and
//! `PrivateMessage`. This module reads exactly those fields and nothing else, without trusting any
//! length: every variable-length vector uses the RFC 9420 §2.1.2 variable-size length prefix (a
//! QUIC-style varint, minimum-length encoding required), checked against the bytes that remain.

use thiserror::Error;

/// `ProtocolVersion mls10`.
pub const MLS10: u16 = 1;

/// `WireFormat` (RFC 9420 §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireFormat {
    /// `mls_public_message` (1).
    PublicMessage,
    /// `mls_private_message` (2).
    PrivateMessage,
    /// `mls_welcome` (3).
    Welcome,
    /// `mls_group_info` (4).
    GroupInfo,
    /// `mls_key_package` (5).
    KeyPackage,
}

/// `ContentType` (RFC 9420 §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentType {
    /// `application` (1).
    Application,
    /// `proposal` (2).
    Proposal,
    /// `commit` (3).
    Commit,
}

/// The clear-text header of a `PublicMessage` or `PrivateMessage`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameHeader<'a> {
    /// Public or private message.
    pub wire_format: WireFormat,
    /// `group_id`.
    pub group_id: &'a [u8],
    /// `epoch`.
    pub epoch: u64,
    /// `content_type`.
    pub content_type: ContentType,
    /// `authenticated_data`.
    pub authenticated_data: &'a [u8],
}

/// Why bytes are not an acceptable MLS message.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FrameError {
    /// The bytes end before the structure does.
    #[error("MLS message is truncated")]
    Truncated,
    /// Not `mls10`.
    #[error("unsupported MLS protocol version {0}")]
    Version(u16),
    /// An unknown or unexpected wire format.
    #[error("unexpected MLS wire format {0}")]
    WireFormat(u16),
    /// An unknown content type.
    #[error("unknown MLS content type {0}")]
    ContentType(u8),
    /// An unknown sender type.
    #[error("unknown MLS sender type {0}")]
    SenderType(u8),
    /// A length prefix that is not minimal or uses the reserved prefix.
    #[error("malformed MLS variable-length prefix")]
    VarInt,
    /// Bytes left over after a `PrivateMessage`.
    #[error("trailing bytes after MLS message")]
    Trailing,
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], FrameError> {
        if self.buf.len() < n {
            return Err(FrameError::Truncated);
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, FrameError> {
        self.take(1)?.first().copied().ok_or(FrameError::Truncated)
    }

    fn u16(&mut self) -> Result<u16, FrameError> {
        let b = self.take(2)?;
        let mut a = [0u8; 2];
        a.copy_from_slice(b);
        Ok(u16::from_be_bytes(a))
    }

    fn u32(&mut self) -> Result<u32, FrameError> {
        let b = self.take(4)?;
        let mut a = [0u8; 4];
        a.copy_from_slice(b);
        Ok(u32::from_be_bytes(a))
    }

    fn u64(&mut self) -> Result<u64, FrameError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    /// RFC 9420 §2.1.2 variable-size vector length.
    fn varint(&mut self) -> Result<usize, FrameError> {
        let first = self.u8()?;
        let prefix = first >> 6;
        let mut v = u64::from(first & 0x3f);
        let extra = match prefix {
            0 => 0,
            1 => 1,
            2 => 3,
            _ => return Err(FrameError::VarInt),
        };
        for _ in 0..extra {
            v = (v << 8) | u64::from(self.u8()?);
        }
        let minimal = match prefix {
            0 => true,
            1 => v >= 64,
            _ => v >= 16384,
        };
        if !minimal {
            return Err(FrameError::VarInt);
        }
        usize::try_from(v).map_err(|_| FrameError::Truncated)
    }

    fn vector(&mut self) -> Result<&'a [u8], FrameError> {
        let n = self.varint()?;
        self.take(n)
    }
}

fn content_type(b: u8) -> Result<ContentType, FrameError> {
    match b {
        1 => Ok(ContentType::Application),
        2 => Ok(ContentType::Proposal),
        3 => Ok(ContentType::Commit),
        other => Err(FrameError::ContentType(other)),
    }
}

fn version_and_format(r: &mut Reader<'_>) -> Result<WireFormat, FrameError> {
    let version = r.u16()?;
    if version != MLS10 {
        return Err(FrameError::Version(version));
    }
    match r.u16()? {
        1 => Ok(WireFormat::PublicMessage),
        2 => Ok(WireFormat::PrivateMessage),
        3 => Ok(WireFormat::Welcome),
        4 => Ok(WireFormat::GroupInfo),
        5 => Ok(WireFormat::KeyPackage),
        other => Err(FrameError::WireFormat(other)),
    }
}

/// Reads the version and wire format of any `MLSMessage`.
pub fn wire_format(bytes: &[u8]) -> Result<WireFormat, FrameError> {
    version_and_format(&mut Reader { buf: bytes })
}

/// Reads the clear-text header of a `PublicMessage` or `PrivateMessage`.
///
/// For a `PrivateMessage` the whole structure is length-checked (no trailing bytes); for a
/// `PublicMessage` parsing stops after `content_type`, since the rest is only meaningful to a
/// group member.
pub fn parse_header(bytes: &[u8]) -> Result<FrameHeader<'_>, FrameError> {
    let mut r = Reader { buf: bytes };
    let wire_format = version_and_format(&mut r)?;
    match wire_format {
        WireFormat::PublicMessage => {
            let group_id = r.vector()?;
            let epoch = r.u64()?;
            match r.u8()? {
                1 | 2 => {
                    r.u32()?;
                }
                3 | 4 => {}
                other => return Err(FrameError::SenderType(other)),
            }
            let authenticated_data = r.vector()?;
            let content_type = content_type(r.u8()?)?;
            Ok(FrameHeader {
                wire_format,
                group_id,
                epoch,
                content_type,
                authenticated_data,
            })
        }
        WireFormat::PrivateMessage => {
            let group_id = r.vector()?;
            let epoch = r.u64()?;
            let content_type = content_type(r.u8()?)?;
            let authenticated_data = r.vector()?;
            r.vector()?; // encrypted_sender_data
            r.vector()?; // ciphertext
            if !r.buf.is_empty() {
                return Err(FrameError::Trailing);
            }
            Ok(FrameHeader {
                wire_format,
                group_id,
                epoch,
                content_type,
                authenticated_data,
            })
        }
        WireFormat::Welcome | WireFormat::GroupInfo | WireFormat::KeyPackage => {
            Err(FrameError::WireFormat(match wire_format {
                WireFormat::Welcome => 3,
                WireFormat::GroupInfo => 4,
                _ => 5,
            }))
        }
    }
}

/// Encodes a vector with the RFC 9420 variable-size length prefix (for tests and tools).
pub fn encode_vector(out: &mut Vec<u8>, data: &[u8]) {
    let n = data.len();
    if n < 64 {
        out.push(n as u8);
    } else if n < 16384 {
        out.extend_from_slice(&((n as u16) | 0x4000).to_be_bytes());
    } else {
        out.extend_from_slice(&(((n as u32) & 0x3fff_ffff) | 0x8000_0000).to_be_bytes());
    }
    out.extend_from_slice(data);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn private_message(group: &[u8], epoch: u64, ct: u8, aad: &[u8], body: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&1u16.to_be_bytes());
        m.extend_from_slice(&2u16.to_be_bytes());
        encode_vector(&mut m, group);
        m.extend_from_slice(&epoch.to_be_bytes());
        m.push(ct);
        encode_vector(&mut m, aad);
        encode_vector(&mut m, b"sender-data");
        encode_vector(&mut m, body);
        m
    }

    proptest! {
        #[test]
        fn private_header_round_trip(group in proptest::collection::vec(any::<u8>(), 0..100),
                                     epoch: u64, ct in 1u8..=3,
                                     aad in proptest::collection::vec(any::<u8>(), 0..300),
                                     body in proptest::collection::vec(any::<u8>(), 0..20000)) {
            let m = private_message(&group, epoch, ct, &aad, &body);
            let h = parse_header(&m).unwrap();
            prop_assert_eq!(h.group_id, &group[..]);
            prop_assert_eq!(h.epoch, epoch);
            prop_assert_eq!(h.authenticated_data, &aad[..]);
            prop_assert_eq!(h.wire_format, WireFormat::PrivateMessage);
            // Any truncation is refused, never a panic.
            for cut in [1usize, 2, m.len() / 2, m.len() - 1] {
                if cut < m.len() {
                    prop_assert!(parse_header(&m[..cut]).is_err());
                }
            }
            let mut trailing = m.clone();
            trailing.push(0);
            prop_assert_eq!(parse_header(&trailing), Err(FrameError::Trailing));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse_header(&bytes);
            let _ = wire_format(&bytes);
        }
    }

    #[test]
    fn rejects_non_minimal_varint_and_bad_fields() {
        let mut m = vec![0, 1, 0, 2, 0x40, 0x01, 0xaa];
        assert_eq!(parse_header(&m), Err(FrameError::VarInt));
        m = vec![0, 2, 0, 2];
        assert_eq!(parse_header(&m), Err(FrameError::Version(2)));
        m = vec![0, 1, 0, 9];
        assert_eq!(parse_header(&m), Err(FrameError::WireFormat(9)));
        let pm = private_message(&[1; 16], 3, 7, b"", b"x");
        assert_eq!(parse_header(&pm), Err(FrameError::ContentType(7)));
    }
}
