//! Who may act: for each use case, the roles that may do it. A door (an HTTP route or a
//! WebSocket command) asks here once, and the service's operations take the [`Permit`] it gets
//! as proof, so no operation runs unchecked and none is checked twice. Rules about whose
//! object it is (a master's own offer, his own shift) need the stored object, and stay with the
//! operation that reads it.

use std::marker::PhantomData;

use super::error::AppError;
use crate::domain::{AuthUser, MasterId, Role};

/// Something a caller may ask for, and who may.
pub trait UseCase {
    const ROLES: &'static [Role];
    /// The `forbidden` message for anyone else.
    const REFUSAL: &'static str;
}

/// Proof that `user` may do `U`; only [`permit`] makes one.
#[derive(Debug)]
pub struct Permit<U> {
    user: AuthUser,
    use_case: PhantomData<fn() -> U>,
}

impl<U> Clone for Permit<U> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<U> Copy for Permit<U> {}

impl<U> Permit<U> {
    pub fn user(&self) -> AuthUser {
        self.user
    }

    /// The caller's master id; `None` for staff.
    pub fn master(&self) -> Option<MasterId> {
        self.user.master()
    }
}

/// Answers whether `user` may do `U`.
pub fn permit<U: UseCase>(user: AuthUser) -> Result<Permit<U>, AppError> {
    let may =
        U::ROLES.contains(&user.role) && (user.role != Role::Master || user.master().is_some());
    if may {
        Ok(Permit {
            user,
            use_case: PhantomData,
        })
    } else {
        Err(AppError::Forbidden(U::REFUSAL.into()))
    }
}

macro_rules! use_cases {
    ($($(#[$doc:meta])* $name:ident: [$($role:ident),+] $refusal:literal;)+) => {
        $(
            $(#[$doc])*
            #[derive(Debug, Clone, Copy)]
            pub struct $name;

            impl UseCase for $name {
                const ROLES: &'static [Role] = &[$(Role::$role),+];
                const REFUSAL: &'static str = $refusal;
            }
        )+
    };
}

use_cases! {
    /// Create and update orders, and set their status.
    ManageOrders: [Service, Admin] "only the service and admins manage orders";
    /// Offer an order to a master.
    MakeOffers: [Service, Admin] "only the service and admins make offers";
    /// Withdraw an offer.
    CancelOffers: [Service, Admin] "only the service and admins cancel offers";
    /// Start, read and cancel cascades of offers.
    Dispatch: [Service, Admin] "only the service and admins dispatch orders";
    /// Push frames to users' connections.
    Push: [Service, Admin] "only the service and admins push";
    /// Read an offer: staff any, a master his own.
    SeeAssignments: [Service, Admin, Master] "only staff and masters see assignments";
    /// Accept, reject and acknowledge one's own offers.
    DecideOffers: [Master] "only masters act on assignments";
    /// Receive one's own offers, live or by polling.
    ReceiveOffers: [Master] "only masters receive offers";
    /// Go on and off shift: staff for anyone, a master for himself.
    SetShifts: [Service, Admin, Master] "only staff and masters change shifts";
    /// Hear every decision (`subscribe_events`).
    WatchEvents: [Service, Admin] "only service and admin connections get events";
    /// Read the admin stats and metrics.
    WatchStats: [Admin] "only admins see the stats";
    /// Send a given-up webhook event again.
    RetryWebhooks: [Admin] "only admins retry webhooks";
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::UserId;

    fn user(role: Role, master_id: Option<i64>) -> AuthUser {
        AuthUser {
            user_id: UserId(1),
            role,
            master_id: master_id.map(MasterId),
        }
    }

    #[test]
    fn each_use_case_admits_its_roles_only() {
        assert!(permit::<DecideOffers>(user(Role::Master, Some(3))).is_ok());
        assert!(permit::<DecideOffers>(user(Role::Service, None)).is_err());
        assert!(permit::<MakeOffers>(user(Role::Master, Some(3))).is_err());
        assert!(permit::<MakeOffers>(user(Role::Admin, None)).is_ok());
        assert!(permit::<WatchStats>(user(Role::Service, None)).is_err());
        assert!(permit::<SeeAssignments>(user(Role::Client, None)).is_err());
        let permit = permit::<SetShifts>(user(Role::Master, Some(3))).unwrap();
        assert_eq!(permit.master(), Some(MasterId(3)));
    }
}
