//! read_frame over arbitrary bytes, with a cap chosen by the input: small
//! (0..=63), the two protocol caps, or any size up to BLOCK_FRAME_MAX. The same
//! stream is read whole (futures::io::Cursor) and in input-chosen pieces with
//! spurious Pending returns; both must yield the same frames.
//!
//! Input: [selector, n, n chunk sizes..., (4 cap bytes when selector % 4 == 3), stream...]

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::executor::block_on;
use futures::io::{AsyncRead, Cursor};
use optimystic_actors::net::{read_frame, write_frame, Frame, BLOCK_FRAME_MAX, CONTROL_FRAME_MAX};

/// Most frames read from one stream.
const MAX_FRAMES: usize = 8;

/// A reader that hands out the stream in pieces of the sizes given, cycling; a
/// size 0 returns Pending once (waking itself) before the next piece.
struct Chunked<'a> {
    data: &'a [u8],
    pos: usize,
    sizes: &'a [u8],
    step: usize,
    pended: bool,
}

impl AsyncRead for Chunked<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let size = if this.sizes.is_empty() {
            usize::MAX
        } else {
            usize::from(this.sizes[this.step % this.sizes.len()])
        };
        this.step += 1;
        if size == 0 && !this.pended {
            this.pended = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        this.pended = false;
        let n = size.max(1).min(buf.len()).min(this.data.len() - this.pos);
        buf[..n].copy_from_slice(&this.data[this.pos..this.pos + n]);
        this.pos += n;
        Poll::Ready(Ok(n))
    }
}

fn cap(selector: u8, rest: &[u8]) -> (usize, &[u8]) {
    match selector % 4 {
        0 => (usize::from(selector >> 2), rest),
        1 => (CONTROL_FRAME_MAX, rest),
        2 => (BLOCK_FRAME_MAX, rest),
        _ => {
            let (head, tail) = rest.split_at(rest.len().min(4));
            let mut b = [0u8; 4];
            b[..head.len()].copy_from_slice(head);
            let n = u32::from_le_bytes(b) as usize % (BLOCK_FRAME_MAX + 1);
            (n, tail)
        }
    }
}

/// Reads frames until one is not Data; checks each and returns them all.
fn read_all<R: AsyncRead + Unpin>(
    r: &mut R,
    max: usize,
    stream: &[u8],
    pos: impl Fn(&R) -> usize,
) -> Vec<Frame> {
    let mut out = Vec::new();
    for _ in 0..MAX_FRAMES {
        let before = pos(r);
        let f = block_on(read_frame(r, max)).expect("an in-memory stream never fails");
        match &f {
            Frame::Data(d) => {
                assert!(
                    d.len() <= max,
                    "frame of {} bytes over the cap {max}",
                    d.len()
                );
                let after = pos(r);
                let prefix = after - before - d.len();
                assert!(
                    (1..=10).contains(&prefix),
                    "length prefix of {prefix} bytes"
                );
                assert_eq!(
                    &stream[after - d.len()..after],
                    &d[..],
                    "frame is not the bytes read"
                );
            }
            Frame::TooLarge { declared, max: m } => {
                assert_eq!(*m, max);
                assert!(
                    *declared > max as u64,
                    "{declared} refused under the cap {max}"
                );
            }
            Frame::Truncated | Frame::BadLength => {}
        }
        let more = matches!(f, Frame::Data(_));
        out.push(f);
        if !more {
            break;
        }
    }
    out
}

/// One input (the fuzz target and the corpus replay in `tests/fuzz_corpus.rs` both call it).
pub fn run(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let Some((&n, rest)) = rest.split_first() else {
        return;
    };
    let (sizes, rest) = rest.split_at(rest.len().min(usize::from(n % 8)));
    let (max, stream) = cap(selector, rest);

    let mut cursor = Cursor::new(stream);
    let whole = read_all(&mut cursor, max, stream, |c| c.position() as usize);
    let mut chunked = Chunked {
        data: stream,
        pos: 0,
        sizes,
        step: 0,
        pended: false,
    };
    let pieces = read_all(&mut chunked, max, stream, |c| c.pos);
    assert_eq!(whole, pieces, "frames depend on how the stream was split");

    // Every frame read writes back to the same frame.
    for f in &whole {
        if let Frame::Data(d) = f {
            let mut out = Cursor::new(Vec::new());
            block_on(write_frame(&mut out, d)).expect("writing to memory never fails");
            let back = block_on(read_frame(&mut Cursor::new(out.into_inner()), max))
                .expect("an in-memory stream never fails");
            assert_eq!(&back, f);
        }
    }
}
