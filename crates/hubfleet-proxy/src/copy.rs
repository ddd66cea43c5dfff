//! Bidirectional copy for upgraded (WebSocket) tunnels that holds no buffer while idle.
//!
//! `tokio::io::copy_bidirectional` keeps two 8 KiB buffers per tunnel for its whole life, which
//! dominates the memory of many idle WebSockets. Here each direction reads into one scratch
//! buffer per thread, writes straight through, and only keeps (on the heap, until flushed)
//! what the other side could not take at once.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const SCRATCH: usize = 16 * 1024;

thread_local! {
    static SCRATCH_BUF: RefCell<Box<[u8]>> = RefCell::new(vec![0u8; SCRATCH].into_boxed_slice());
}

#[derive(Default)]
struct Direction {
    /// Bytes read but not yet written; empty (no allocation) in the steady state.
    pending: Vec<u8>,
    pos: usize,
    needs_flush: bool,
    read_done: bool,
    done: bool,
    total: u64,
}

impl Direction {
    fn poll_copy<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        mut r: Pin<&mut R>,
        mut w: Pin<&mut W>,
    ) -> Poll<io::Result<u64>>
    where
        R: AsyncRead + ?Sized,
        W: AsyncWrite + ?Sized,
    {
        loop {
            if self.done {
                return Poll::Ready(Ok(self.total));
            }
            while self.pos < self.pending.len() {
                let n = ready!(w.as_mut().poll_write(cx, &self.pending[self.pos..]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                self.pos += n;
                self.total += n as u64;
                self.needs_flush = true;
            }
            if !self.pending.is_empty() {
                // Give the memory back: idle tunnels hold no buffer.
                self.pending = Vec::new();
                self.pos = 0;
            }
            if self.needs_flush {
                ready!(w.as_mut().poll_flush(cx))?;
                self.needs_flush = false;
            }
            if self.read_done {
                ready!(w.as_mut().poll_shutdown(cx))?;
                self.done = true;
                continue;
            }
            let step = SCRATCH_BUF.with(|scratch| -> Poll<io::Result<()>> {
                let mut scratch = scratch.borrow_mut();
                let mut buf = ReadBuf::new(&mut scratch[..]);
                ready!(r.as_mut().poll_read(cx, &mut buf))?;
                let data = buf.filled();
                if data.is_empty() {
                    self.read_done = true;
                    return Poll::Ready(Ok(()));
                }
                match w.as_mut().poll_write(cx, data) {
                    Poll::Ready(Ok(0)) => {
                        return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                    }
                    Poll::Ready(Ok(n)) => {
                        self.total += n as u64;
                        self.needs_flush = true;
                        if n < data.len() {
                            self.pending = data[n..].to_vec();
                        }
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => self.pending = data.to_vec(),
                }
                Poll::Ready(Ok(()))
            });
            ready!(step)?;
        }
    }
}

/// Copy both ways until both sides have closed; returns (bytes a→b, bytes b→a).
pub(crate) fn copy_bidirectional<'a, A, B>(
    a: &'a mut A,
    b: &'a mut B,
) -> impl Future<Output = io::Result<(u64, u64)>> + 'a
where
    A: AsyncRead + AsyncWrite + Unpin + ?Sized,
    B: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    let mut a_to_b = Direction::default();
    let mut b_to_a = Direction::default();
    std::future::poll_fn(move |cx| {
        let ab = a_to_b.poll_copy(cx, Pin::new(&mut *a), Pin::new(&mut *b))?;
        let ba = b_to_a.poll_copy(cx, Pin::new(&mut *b), Pin::new(&mut *a))?;
        match (ab, ba) {
            (Poll::Ready(x), Poll::Ready(y)) => Poll::Ready(Ok((x, y))),
            _ => Poll::Pending,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn copies_both_ways_including_large_and_partial_writes() {
        // Small duplex buffers force partial writes and Pending on the writer side.
        let (mut client, mut a) = tokio::io::duplex(1024);
        let (mut b, mut server) = tokio::io::duplex(1024);
        let pump = tokio::spawn(async move { copy_bidirectional(&mut a, &mut b).await });

        let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let expected = big.clone();
        let writer = tokio::spawn(async move {
            client.write_all(&big).await.unwrap();
            client.shutdown().await.unwrap();
            let mut back = Vec::new();
            client.read_to_end(&mut back).await.unwrap();
            back
        });
        let mut got = Vec::new();
        server.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, expected);
        server.write_all(b"reply").await.unwrap();
        server.shutdown().await.unwrap();
        assert_eq!(writer.await.unwrap(), b"reply");
        let (up, down) = pump.await.unwrap().unwrap();
        assert_eq!((up, down), (200_000, 5));
    }
}
