//! The last pass that found nothing to do, and how later wake-ups are planned from it (issue 17).

use std::sync::Arc;
use std::time::SystemTime;

use super::holdings::version;
use crate::core::container_set::ContainerSet;
use crate::core::plan::{
    AfterIdle, CarriedOut, CertSpecLite, DesiredSet, Identity, IdleOutcome, PartPlan, Plan,
    WakeIndex, World, idle_plan_holds, plan_after_idle,
};

/// The inputs of a pass whose plan had nothing to do. The plan is a function of its inputs,
/// and the clock enters it only through each identity's own wake-up ([`WakeIndex`]; going
/// forward: a clock set back plans again at once): with the same containers (running states
/// aside: [`idle_plan_holds`]), CA bundle and holdings, it stays the same empty plan until the
/// first of them, and a wake-up (a labelled container's stop or start, an event about another
/// container, a file event, the loop's timer) is answered without planning again.
/// Other changes to the containers (a few come, go, or change labels or networks), and the
/// identities whose wake-up came (a renewal due, a retry, an orphan's removal), are planned by
/// planning only what they touch ([`plan_after_idle`]), with the work that needs; the quiet
/// then moves to that plan, which had nothing to do but that work, and the next pass plans
/// again what carrying it out changed ([`CarriedOut`]: holdings change only there).
/// Holdings change otherwise only in a whole pass, through the reconciler's methods that drop
/// this (`settings_changed`, `verify_outputs`), or when a revoked certificate is made due now
/// (`replace_revoked`, which makes its identity's wake-up now).
pub(super) struct Quiet {
    pub(super) asking: ContainerSet,
    pub(super) listed: bool,
    pub(super) bundle: String,
    /// The version of `ca.pem` alone under that bundle (see [`World::ca_version`]); shared, so
    /// that a wake-up reads it without a copy while it updates the quiet.
    pub(super) ca_version: Arc<str>,
    /// certdock's own client certificate as the settings ask for it (a reload drops the
    /// quiet); shared, like `ca_version`, so that a wake-up builds no copy.
    pub(super) client: Arc<CertSpecLite>,
    /// The latest time a plan was made or found to hold: a clock set back before it may make
    /// a certificate not yet valid, so the plan is made again.
    pub(super) planned_at: SystemTime,
    /// Each identity's next wake-up as the plans made since said.
    pub(super) wakes: WakeIndex,
    /// What the idle plan said (its desired certificates go to the outputs).
    pub(super) outcome: IdleOutcome,
    /// What the pass that made this plan carried out (planned again with the next part).
    pub(super) since: CarriedOut,
}

/// What a wake-up comes to after a quiet (see [`Quiet::plan`]).
pub(super) enum FromQuiet {
    /// The idle plan still holds until then (`None`: until something changes); these are its
    /// desired certificates.
    Holds {
        until: Option<SystemTime>,
        desired: DesiredSet,
    },
    /// The whole plan, made from the part that changed; the rows it may show otherwise.
    Changed(Box<PartPlan>),
}

impl Quiet {
    /// The quiet after the whole plan `p` made at `planned_at`, which had nothing to do, with
    /// certdock's own client certificate `client`.
    pub(super) fn after(
        p: &Plan,
        asking: ContainerSet,
        listed: bool,
        bundle: &str,
        client: CertSpecLite,
        planned_at: SystemTime,
    ) -> Quiet {
        Quiet {
            asking,
            listed,
            bundle: bundle.to_string(),
            ca_version: version("ca", bundle).into(),
            client: Arc::new(client),
            planned_at,
            wakes: WakeIndex::of(&p.wakes),
            outcome: IdleOutcome::of(p),
            since: CarriedOut::default(),
        }
    }

    /// The plan for `world` (whose containers are the store's now) made from this quiet:
    /// `Holds` when the idle plan still holds (the quiet then covers these containers and this
    /// time), `Changed` with the whole plan when the containers' changes or the identities
    /// whose wake-up came have something to do or show. `None` when only a whole plan can
    /// tell (the inputs changed, the clock went back, or too many changed). `world` has
    /// certdock's own client certificate: it is planned when its wake-up came.
    pub(super) fn plan(
        &mut self,
        world: &World<'_>,
        listed: bool,
        bundle: &str,
    ) -> Option<FromQuiet> {
        let now = world.now;
        if self.listed != listed || self.bundle != bundle || now < self.planned_at {
            return None;
        }
        self.planned_at = now;
        let due: Vec<Identity> = self.wakes.due(now).cloned().collect();
        let asking = world.containers;
        if !due.is_empty() || !self.since.is_empty() || !idle_plan_holds(&self.asking, asking) {
            let after = plan_after_idle(world, &self.asking, &self.since, &due, &self.outcome)?;
            match after {
                AfterIdle::Holds { planned, wakes } => {
                    self.wakes.replace(&planned, &wakes);
                    self.asking = asking.clone();
                    self.since = CarriedOut::default();
                }
                AfterIdle::Changed(part) => {
                    // The part's wake-ups are its plan's from now on (the reconciler drops
                    // the quiet when it does not carry that plan out).
                    self.wakes.replace(&part.scope.names, &part.plan.wakes);
                    return Some(FromQuiet::Changed(part));
                }
            }
        }
        Some(FromQuiet::Holds {
            until: self.wakes.next(),
            desired: self.outcome.desired.clone(),
        })
    }

    /// A pass carried out `p`, the `Changed` plan for the containers `asking`: the quiet moves
    /// to it, with its work to plan again.
    pub(super) fn carried_out(&mut self, p: &Plan, asking: &ContainerSet) {
        self.asking = asking.clone();
        self.since = CarriedOut::of(p);
        self.outcome = IdleOutcome::of(p);
    }
}
