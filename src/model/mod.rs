//! Models built on the public GPU API (weights resident compressed, products from
//! [`crate::gpu`], their own kernels registered with [`crate::gpu::GpuContext::kernels_of`]):
//! vramzip inside real inference loops, and examples of using it from outside the runtime.

pub mod bert;
