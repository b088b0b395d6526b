pub mod rmsnorm;
pub mod elementwise;
