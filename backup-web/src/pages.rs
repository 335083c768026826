//! The dashboard's pages: server-rendered HTML that works without
//! JavaScript. Each page is a file of its own.

mod artifacts;
mod overview;
mod runs;
mod schedules;

pub use self::{
    artifacts::artifacts,
    overview::overview,
    runs::{run, runs},
    schedules::schedules,
};
