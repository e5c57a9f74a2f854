//! Training loops and the steps they are made of.

pub mod step;
