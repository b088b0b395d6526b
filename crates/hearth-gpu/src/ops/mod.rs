pub mod rmsnorm;
