//! Status enums stored in text columns, the same text on both backends.

use diesel::{
    backend::Backend,
    deserialize::{self, FromSql},
    serialize::{self, Output, ToSql},
    sql_types::Text,
};

use crate::domain::{
    AssignmentStatus, CandidateOutcome, DispatchMode, DispatchStatus, OrderStatus,
};

macro_rules! text_column {
    ($status:ty) => {
        impl<DB> ToSql<Text, DB> for $status
        where
            DB: Backend,
            str: ToSql<Text, DB>,
        {
            fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, DB>) -> serialize::Result {
                self.as_str().to_sql(out)
            }
        }

        impl<DB> FromSql<Text, DB> for $status
        where
            DB: Backend,
            String: FromSql<Text, DB>,
        {
            fn from_sql(bytes: DB::RawValue<'_>) -> deserialize::Result<Self> {
                Ok(String::from_sql(bytes)?.parse()?)
            }
        }
    };
}

text_column!(OrderStatus);
text_column!(AssignmentStatus);
text_column!(DispatchStatus);
text_column!(DispatchMode);
text_column!(CandidateOutcome);
