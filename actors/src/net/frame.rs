//! Framing: one unsigned-varint length prefix, then that many bytes. The length is
//! checked against the cap **before** anything is allocated, and a frame that cannot
//! be read whole is reported as a value, so the service can still answer with an
//! error frame on the same stream.

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::request_response;
use libp2p::StreamProtocol;

/// What came off a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A whole frame.
    Data(Vec<u8>),
    /// The declared length exceeds the cap; the body was not read.
    TooLarge {
        /// Declared length.
        declared: u64,
        /// The cap.
        max: usize,
    },
    /// The stream ended before the declared length arrived.
    Truncated,
    /// The length prefix is not a valid unsigned varint.
    BadLength,
}

/// Reads one frame of at most `max` bytes.
pub async fn read_frame<T: AsyncRead + Unpin>(io: &mut T, max: usize) -> io::Result<Frame> {
    let declared = match unsigned_varint::aio::read_u64(&mut *io).await {
        Ok(n) => n,
        Err(unsigned_varint::io::ReadError::Io(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
            return Ok(Frame::Truncated)
        }
        Err(unsigned_varint::io::ReadError::Io(e)) => return Err(e),
        Err(_) => return Ok(Frame::BadLength),
    };
    let Some(len) = usize::try_from(declared).ok().filter(|n| *n <= max) else {
        return Ok(Frame::TooLarge { declared, max });
    };
    let mut buf = vec![0; len];
    match io.read_exact(&mut buf).await {
        Ok(()) => Ok(Frame::Data(buf)),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(Frame::Truncated),
        Err(e) => Err(e),
    }
}

/// Writes `bytes` as one frame and flushes.
pub async fn write_frame<T: AsyncWrite + Unpin>(io: &mut T, bytes: &[u8]) -> io::Result<()> {
    let mut prefix = unsigned_varint::encode::u64_buffer();
    let prefix = unsigned_varint::encode::u64(bytes.len() as u64, &mut prefix);
    io.write_all(prefix).await?;
    io.write_all(bytes).await?;
    io.flush().await
}

/// The request-response codec of every Optimystic protocol: framing only; what
/// the bytes mean is the service's business (so a bad message can still be
/// answered with an error frame).
#[derive(Debug, Clone, Copy)]
pub struct FrameCodec {
    /// Cap on inbound requests.
    pub max_request: usize,
    /// Cap on inbound responses.
    pub max_response: usize,
}

impl request_response::Codec for FrameCodec {
    type Protocol = StreamProtocol;
    type Request = Frame;
    type Response = Frame;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Frame>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_frame(io, self.max_request).await
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Frame>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_frame(io, self.max_response).await
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Frame,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        match req {
            Frame::Data(bytes) => write_frame(io, &bytes).await,
            other => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("cannot send {other:?}"),
            )),
        }
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Frame,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        match res {
            Frame::Data(bytes) => write_frame(io, &bytes).await,
            other => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("cannot send {other:?}"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;
    use futures::io::Cursor;

    #[test]
    fn roundtrip_and_caps() {
        let mut buf = Cursor::new(Vec::new());
        block_on(write_frame(&mut buf, b"hello")).unwrap();
        let bytes = buf.into_inner();
        assert_eq!(bytes[0], 5);
        assert_eq!(
            block_on(read_frame(&mut Cursor::new(bytes.clone()), 16)).unwrap(),
            Frame::Data(b"hello".to_vec())
        );
        assert!(matches!(
            block_on(read_frame(&mut Cursor::new(bytes.clone()), 4)).unwrap(),
            Frame::TooLarge { declared: 5, .. }
        ));
        assert_eq!(
            block_on(read_frame(&mut Cursor::new(bytes[..3].to_vec()), 16)).unwrap(),
            Frame::Truncated
        );
        assert_eq!(
            block_on(read_frame(&mut Cursor::new(vec![0xff; 11]), 16)).unwrap(),
            Frame::BadLength
        );
        // 100 MiB declared: refused without allocating it.
        let mut big = unsigned_varint::encode::u64_buffer();
        let big = unsigned_varint::encode::u64(100 << 20, &mut big).to_vec();
        assert!(matches!(
            block_on(read_frame(&mut Cursor::new(big), 1 << 20)).unwrap(),
            Frame::TooLarge { .. }
        ));
    }
}
