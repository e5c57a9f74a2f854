//! Plumbing for the project's own ops on dfdx's tape: reading tensor data, and borrowing
//! gradient buffers inside a backward op without copying them.

use std::any::{Any, TypeId};
use std::sync::Mutex;

use dfdx::shapes::{Dtype, HasShape, Shape};
use dfdx::tensor::{Cpu, Tensor};
use dfdx::tensor_ops::ReshapeTo;
use rayon::prelude::*;

/// The tensor's elements in row-major order (a copy; a non-contiguous tensor is made
/// contiguous first).
pub fn to_vec<S: Shape, E: Dtype, T>(t: &Tensor<S, E, Cpu, T>) -> Vec<E> {
    let t = t.retaped::<dfdx::tensor::NoneTape>().reshape_like(t.shape());
    let mut v = vec![E::default(); t.shape().num_elements()];
    t.copy_into(&mut v);
    v
}

/// `n` zeros, written in parallel (a `vec!` of zeros is a serial memset over memory the
/// allocator reuses): the output buffers of the kernels.
pub fn zeros<E: Copy + Default + Send + Sync>(n: usize) -> Vec<E> {
    let mut v = Vec::with_capacity(n);
    v.par_extend(rayon::iter::repeat_n(E::default(), n));
    v
}

/// A copy of a tensor's elements in a reused buffer: the buffer comes from a pool of earlier
/// ones (a step copies the same sizes again and again), so it is neither zero-filled nor freshly
/// paged before the copy, as [`to_vec`]'s is. Dereferences to the elements (mutably too); goes
/// back to the pool when dropped. [`buffer`] hands out a pooled buffer without the copy;
/// [`Copied::unpooled`] wraps a vector from elsewhere the same way, to go back to the allocator
/// instead.
pub struct Copied<E: 'static + Send> {
    buf: Vec<E>,
    len: usize,
    /// Whether the buffer goes back to the pool when dropped (else to the allocator).
    pooled: bool,
}

/// Bytes the pool of one element type keeps, at most: the largest buffers go first when one
/// more comes back past it. The small ResNet's step (copies, fused activations, the gradients
/// between fused layers) fits; of a larger network's, the largest buffers go back to the
/// allocator, and the next step takes zeroed ones instead.
const POOL_BYTES: usize = 1 << 30;

/// The pool of one element type: buffers whose every element is initialised.
fn with_pool<E: 'static + Send, R>(f: impl FnOnce(&mut Vec<Vec<E>>) -> R) -> R {
    type Pools = Vec<(TypeId, Box<dyn Any + Send>)>;
    static POOLS: Mutex<Pools> = Mutex::new(Vec::new());
    let mut pools = POOLS.lock().unwrap_or_else(|e| e.into_inner());
    let at = match pools.iter().position(|(t, _)| *t == TypeId::of::<E>()) {
        Some(i) => i,
        None => {
            pools.push((TypeId::of::<E>(), Box::new(Vec::<Vec<E>>::new())));
            pools.len() - 1
        }
    };
    f(pools[at].1.downcast_mut::<Vec<Vec<E>>>().expect("pool of its type"))
}

/// A buffer of `len` elements from the pool (their values are whatever an earlier user left):
/// the smallest pooled buffer that is long enough and at most twice as long (a small buffer
/// holding a large one until its backward would make others allocate), else a new (zeroed)
/// one. For a kernel's output that the kernel writes whole (an activation inside a fused op, a
/// gradient stored with [`Store::Write`]): from the pool it needs no zero fill, which had been
/// 5% of the small ResNet's step (`perf`, 2026-12-02).
pub fn buffer<E: Copy + Default + Send + Sync + 'static>(len: usize) -> Copied<E> {
    let buf = match len {
        0 => None,
        _ => with_pool(|pool: &mut Vec<Vec<E>>| {
            let fits = |b: &Vec<E>| b.len() >= len && b.len() <= 2 * len;
            let best = pool.iter().enumerate().filter(|(_, b)| fits(b)).min_by_key(|(_, b)| b.len()).map(|(i, _)| i);
            best.map(|i| pool.swap_remove(i))
        }),
    };
    Copied { buf: buf.unwrap_or_else(|| zeros(len)), len, pooled: true }
}

/// How a backward stores an input gradient in the buffer it is given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Store {
    /// Added to the buffer's values (other consumers' parts, or zeros).
    Add,
    /// Written over the buffer's values (stale ones, from [`buffer`]): the whole gradient.
    Write,
}

/// The tensor's elements in row-major order in a pooled buffer.
pub fn copied<S: Shape, E: Dtype, T>(t: &Tensor<S, E, Cpu, T>) -> Copied<E> {
    let t = t.retaped::<dfdx::tensor::NoneTape>().reshape_like(t.shape());
    let mut buf = buffer(t.shape().num_elements());
    t.copy_into(&mut buf);
    buf
}

impl<E: 'static + Send> Copied<E> {
    /// A buffer that goes back to the allocator, not the pool, when dropped: a vector from
    /// outside the pool (a gradient taken from dfdx) where pooled buffers are used. (The
    /// activations inside fused ops went back to the allocator too, for the memory dfdx
    /// allocates next; since they are pooled, to skip the zero fill, the step's peak RSS
    /// is 1-4% higher: small ResNet 477 vs 471 MiB, ResNet-18 1978 vs 1910 MiB, 2026-12-02.)
    pub fn unpooled(buf: Vec<E>) -> Self {
        let len = buf.len();
        Copied { buf, len, pooled: false }
    }
}

impl<E: 'static + Send> std::ops::Deref for Copied<E> {
    type Target = [E];
    fn deref(&self) -> &[E] {
        &self.buf[..self.len]
    }
}

impl<E: 'static + Send> std::ops::DerefMut for Copied<E> {
    fn deref_mut(&mut self) -> &mut [E] {
        &mut self.buf[..self.len]
    }
}

impl<E: 'static + Send> Drop for Copied<E> {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        if buf.is_empty() || !self.pooled {
            return;
        }
        with_pool(move |pool: &mut Vec<Vec<E>>| {
            pool.push(buf);
            let cap = POOL_BYTES / std::mem::size_of::<E>().max(1);
            let mut kept: usize = pool.iter().map(Vec::len).sum();
            while kept > cap {
                let largest = (0..pool.len()).max_by_key(|&i| pool[i].len()).unwrap_or(0);
                kept -= pool.swap_remove(largest).len();
            }
        });
    }
}

/// Moves the gradient buffer of a tensor or ghost out of `Gradients` (zeros if it had none),
/// as a `Vec<f32>`; give it back with [`put_grad!`]. Use inside a backward op returning
/// `Result<_, CpuError>`.
///
/// An op takes its *output's* gradient and does not give it back: backward ops run in reverse
/// order, so every consumer of the output has already added its part, and nothing reads it
/// again. Freeing it there keeps dfdx from holding every intermediate gradient until the end
/// of the backward pass (PyTorch frees them as it goes too); the entry stays, empty.
macro_rules! take_grad {
    ($grads:expr, $t:expr) => {
        std::mem::take(&mut **$grads.get_or_alloc_mut($t)?)
    };
}

/// Returns a gradient buffer taken with [`take_grad!`].
macro_rules! put_grad {
    ($grads:expr, $t:expr, $v:expr) => {
        **$grads.get_or_alloc_mut($t)? = $v
    };
}

pub(crate) use {put_grad, take_grad};
