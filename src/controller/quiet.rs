//! The last pass that found nothing to do, and when it still answers a wake-up (issue 17).

use std::sync::Arc;
use std::time::SystemTime;

use crate::core::labelled::Labelled;
use crate::core::plan::{IdleOutcome, World, idle_plan_holds, idle_plan_still_holds};

/// The inputs of a pass whose plan had nothing to do. The plan is a function of its inputs,
/// and its `next_wake` is the first moment the clock alone could change it (going forward; a
/// clock set back plans again at once): until then, the same containers (running states
/// aside: [`idle_plan_holds`]), CA bundle and holdings give the same empty plan, and a
/// wake-up (a labelled container's stop or start, an event about another container, a file
/// event, a timer) is answered without planning again.
/// Other changes to the containers (a few come, go, or change labels or networks) are checked
/// by planning only what they touch ([`idle_plan_still_holds`]).
/// Holdings change only in a pass or through the reconciler's methods that drop this
/// (`replace_revoked`, `settings_changed`, `verify_outputs`). At the latest after the
/// reconciler's `MAX_SLEEP` a whole pass runs anyway.
pub(super) struct Quiet {
    pub(super) asking: Arc<[Arc<Labelled>]>,
    pub(super) listed: bool,
    pub(super) bundle: String,
    /// The version of `ca.pem` alone under that bundle (see [`World::ca_version`]); shared, so
    /// that a wake-up reads it without a copy while it updates the quiet.
    pub(super) ca_version: Arc<str>,
    /// When the plan was made: a clock set back before it may make a certificate not yet
    /// valid, so the plan is made again.
    pub(super) planned_at: SystemTime,
    pub(super) until: SystemTime,
    /// What the idle plan said (its desired certificates go to the outputs).
    pub(super) outcome: IdleOutcome,
}

impl Quiet {
    /// `Some(until)` when the idle plan still holds for `world` (whose containers are `asking`,
    /// the store's list now); the quiet then covers these containers.
    pub(super) fn still_holds(
        &mut self,
        world: &World<'_>,
        listed: bool,
        bundle: &str,
        asking: &Arc<[Arc<Labelled>]>,
    ) -> Option<SystemTime> {
        let now = world.now;
        let same_inputs = self.listed == listed
            && self.bundle == bundle
            && self.planned_at <= now
            && now < self.until;
        if !same_inputs {
            return None;
        }
        if idle_plan_holds(&self.asking, asking) {
            return Some(self.until);
        }
        let wake = idle_plan_still_holds(world, &self.asking, &self.outcome)?;
        self.until = wake.map_or(self.until, |w| w.min(self.until));
        self.asking = asking.clone();
        Some(self.until)
    }
}
