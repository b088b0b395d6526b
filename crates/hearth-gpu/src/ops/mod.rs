pub mod rmsnorm;
pub mod elementwise;
pub mod rope;
pub mod sample;
pub mod matmul;
pub mod softmax;
pub mod embedding;
pub mod attention;
