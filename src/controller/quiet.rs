//! The last pass that found nothing to do, and how later wake-ups are planned from it (issue 17).

use std::sync::Arc;
use std::time::SystemTime;

use crate::core::container_set::ContainerSet;
use crate::core::plan::{
    AfterIdle, CarriedOut, DesiredSet, IdleOutcome, PartPlan, Plan, World, idle_plan_holds,
    plan_after_idle,
};

/// The inputs of a pass whose plan had nothing to do. The plan is a function of its inputs,
/// and its `next_wake` is the first moment the clock alone could change it (going forward; a
/// clock set back plans again at once): until then, the same containers (running states
/// aside: [`idle_plan_holds`]), CA bundle and holdings give the same empty plan, and a
/// wake-up (a labelled container's stop or start, an event about another container, a file
/// event, a timer) is answered without planning again.
/// Other changes to the containers (a few come, go, or change labels or networks) are planned
/// by planning only what they touch ([`plan_after_idle`]), with the work that needs; the quiet
/// then moves to that plan, which had nothing to do but that work, and the next pass plans
/// again what carrying it out changed ([`CarriedOut`]: holdings change only there).
/// Holdings change otherwise only in a whole pass or through the reconciler's methods that drop
/// this (`replace_revoked`, `settings_changed`, `verify_outputs`). At the latest after the
/// reconciler's `MAX_SLEEP` a whole pass runs anyway.
pub(super) struct Quiet {
    pub(super) asking: ContainerSet,
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
    /// What the pass that made this plan carried out (planned again with the next part).
    pub(super) since: CarriedOut,
}

/// What a wake-up comes to after a quiet (see [`Quiet::plan`]).
pub(super) enum FromQuiet {
    /// The idle plan still holds until then; these are its desired certificates.
    Holds {
        until: SystemTime,
        desired: DesiredSet,
    },
    /// The whole plan, made from the part that changed; the rows it may show otherwise.
    Changed(Box<PartPlan>),
}

impl Quiet {
    /// The plan for `world` (whose containers are the store's now) made from this quiet:
    /// `Holds` when the idle plan still holds (the quiet then covers these containers),
    /// `Changed` with the whole plan when the containers' changes have something to do or
    /// show. `None` when only a whole plan can tell.
    pub(super) fn plan(
        &mut self,
        world: &World<'_>,
        listed: bool,
        bundle: &str,
    ) -> Option<FromQuiet> {
        let now = world.now;
        let same_inputs = self.listed == listed
            && self.bundle == bundle
            && self.planned_at <= now
            && now < self.until;
        if !same_inputs {
            return None;
        }
        let asking = world.containers;
        if !self.since.is_empty() || !idle_plan_holds(&self.asking, asking) {
            match plan_after_idle(world, &self.asking, &self.since, &self.outcome)? {
                AfterIdle::Holds(wake) => {
                    self.until = wake.map_or(self.until, |w| w.min(self.until));
                    self.asking = asking.clone();
                    self.since = CarriedOut::default();
                }
                AfterIdle::Changed(part) => return Some(FromQuiet::Changed(part)),
            }
        }
        Some(FromQuiet::Holds {
            until: self.until,
            desired: self.outcome.desired.clone(),
        })
    }

    /// A pass carried out `p`, the `Changed` plan for the containers `asking`: the quiet moves
    /// to it, with its work to plan again.
    pub(super) fn carried_out(&mut self, p: &Plan, asking: &ContainerSet) {
        if let Some(w) = p.next_wake {
            self.until = self.until.min(w);
        }
        self.asking = asking.clone();
        self.since = CarriedOut::of(p);
        self.outcome = IdleOutcome::of(p);
    }
}
