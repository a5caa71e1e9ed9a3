//! The exported objects: their shape, the engine's answers in their tables, and the gaps.

use super::*;
