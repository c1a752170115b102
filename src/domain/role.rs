//! Who a caller is to the service. The role names are spelled here and nowhere else.

use serde::{Deserialize, Serialize};

use super::{MasterId, UserId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Master,
    Client,
    Admin,
    Service,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Master, Role::Client, Role::Service, Role::Admin];

    /// What a connection that has not authenticated yet is counted as.
    pub const UNAUTHENTICATED: &str = "unauthenticated";

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Master => "master",
            Role::Client => "client",
            Role::Admin => "admin",
            Role::Service => "service",
        }
    }

    /// A connection's role as the metrics and stats count it.
    pub fn label(role: Option<Role>) -> &'static str {
        role.map_or(Self::UNAUTHENTICATED, Role::as_str)
    }

    /// Every label [`Role::label`] gives, in the order the stats list them.
    pub fn labels() -> impl Iterator<Item = &'static str> {
        Self::ALL
            .iter()
            .map(|r| r.as_str())
            .chain([Self::UNAUTHENTICATED])
    }

    pub fn is_staff(self) -> bool {
        matches!(self, Role::Admin | Role::Service)
    }
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown role {s:?}; use master, client, admin or service"))
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The authenticated caller of a request or a WebSocket connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthUser {
    pub user_id: UserId,
    pub role: Role,
    pub master_id: Option<MasterId>,
}

impl AuthUser {
    /// The master id of a master caller.
    pub fn master(&self) -> Option<MasterId> {
        match self.role {
            Role::Master => self.master_id,
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_match_serde() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>().unwrap(), role);
            assert_eq!(serde_json::to_value(role).unwrap(), role.as_str());
        }
        assert!("root".parse::<Role>().is_err());
    }
}
