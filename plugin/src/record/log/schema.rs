//! The columns of upstream's log schema: their names, kinds and file order
//! (`upstream.md` §3.2), the one description the mapping and the converter share.

/// The kind of a log column in the Parquet schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColKind {
    /// UTF8 string, REQUIRED.
    ReqStr,
    /// UTF8 string, OPTIONAL.
    OptStr,
    /// BOOLEAN, OPTIONAL.
    OptBool,
    /// MAP<string, bytes>, REQUIRED group.
    Map,
    /// `LIST<string>`, REQUIRED group.
    List,
}

/// Scalar string columns, in schema order. The discriminant indexes [`LogRecord`](super::LogRecord) spans.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Str {
    Time,
    Level,
    Message,
    CorrelationId,
    BusinessCapability,
    BusinessDomain,
    BusinessService,
    ApplicationService,
    Az,
    CloudProvider,
    DeviceId,
    Duration,
    Error,
    ErrorCode,
    Hmac,
    HttpResponse,
    LoggerName,
    MessageId,
    PersonId,
    Region,
    ResourceType,
    SessionId,
    SourceId,
    StackTrace,
    ThreadName,
    TransactionMessageReference,
    Ttl,
    UserId,
}

pub const N_STR: usize = 28;

impl Str {
    pub const ALL: [Str; N_STR] = [
        Str::Time,
        Str::Level,
        Str::Message,
        Str::CorrelationId,
        Str::BusinessCapability,
        Str::BusinessDomain,
        Str::BusinessService,
        Str::ApplicationService,
        Str::Az,
        Str::CloudProvider,
        Str::DeviceId,
        Str::Duration,
        Str::Error,
        Str::ErrorCode,
        Str::Hmac,
        Str::HttpResponse,
        Str::LoggerName,
        Str::MessageId,
        Str::PersonId,
        Str::Region,
        Str::ResourceType,
        Str::SessionId,
        Str::SourceId,
        Str::StackTrace,
        Str::ThreadName,
        Str::TransactionMessageReference,
        Str::Ttl,
        Str::UserId,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Str::Time => "time",
            Str::Level => "level",
            Str::Message => "message",
            Str::CorrelationId => "correlation-id",
            Str::BusinessCapability => "business-capability",
            Str::BusinessDomain => "business-domain",
            Str::BusinessService => "business-service",
            Str::ApplicationService => "application-service",
            Str::Az => "az",
            Str::CloudProvider => "cloud-provider",
            Str::DeviceId => "device-id",
            Str::Duration => "duration",
            Str::Error => "error",
            Str::ErrorCode => "error-code",
            Str::Hmac => "hmac",
            Str::HttpResponse => "http-response",
            Str::LoggerName => "logger-name",
            Str::MessageId => "message-id",
            Str::PersonId => "person-id",
            Str::Region => "region",
            Str::ResourceType => "resource-type",
            Str::SessionId => "session-id",
            Str::SourceId => "source-id",
            Str::StackTrace => "stack-trace",
            Str::ThreadName => "thread-name",
            Str::TransactionMessageReference => "transaction-message-reference",
            Str::Ttl => "ttl",
            Str::UserId => "user-id",
        }
    }

    /// Required columns are never null: they default to "" (or "info" for level).
    pub fn required(self) -> bool {
        matches!(
            self,
            Str::Time
                | Str::Level
                | Str::Message
                | Str::BusinessCapability
                | Str::BusinessDomain
                | Str::BusinessService
                | Str::ApplicationService
                | Str::Hmac
        )
    }

    pub fn from_name(name: &str) -> Option<Str> {
        Str::ALL.iter().copied().find(|s| s.name() == name)
    }
}

/// A column of the log schema, in upstream order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Col {
    S(Str),
    Args,
    Audit,
    AutoIndex,
    ExtraFields,
    Tags,
    TraceIp,
}

impl Col {
    pub fn name(self) -> &'static str {
        match self {
            Col::S(s) => s.name(),
            Col::Args => "args",
            Col::Audit => "audit",
            Col::AutoIndex => "auto-index",
            Col::ExtraFields => "extra-fields",
            Col::Tags => "tags",
            Col::TraceIp => "trace-ip",
        }
    }

    pub fn kind(self) -> ColKind {
        match self {
            Col::S(s) if s.required() => ColKind::ReqStr,
            Col::S(_) => ColKind::OptStr,
            Col::Audit | Col::AutoIndex => ColKind::OptBool,
            Col::Args | Col::ExtraFields => ColKind::Map,
            Col::Tags | Col::TraceIp => ColKind::List,
        }
    }
}

/// The 34 columns of the upstream log schema, in file order (`upstream.md` §3.2).
pub const COLUMNS: [Col; 34] = [
    Col::S(Str::Time),
    Col::S(Str::Level),
    Col::S(Str::Message),
    Col::S(Str::CorrelationId),
    Col::S(Str::BusinessCapability),
    Col::S(Str::BusinessDomain),
    Col::S(Str::BusinessService),
    Col::S(Str::ApplicationService),
    Col::Args,
    Col::Audit,
    Col::AutoIndex,
    Col::S(Str::Az),
    Col::S(Str::CloudProvider),
    Col::S(Str::DeviceId),
    Col::S(Str::Duration),
    Col::S(Str::Error),
    Col::S(Str::ErrorCode),
    Col::ExtraFields,
    Col::S(Str::Hmac),
    Col::S(Str::HttpResponse),
    Col::S(Str::LoggerName),
    Col::S(Str::MessageId),
    Col::S(Str::PersonId),
    Col::S(Str::Region),
    Col::S(Str::ResourceType),
    Col::S(Str::SessionId),
    Col::S(Str::SourceId),
    Col::S(Str::StackTrace),
    Col::Tags,
    Col::S(Str::ThreadName),
    Col::TraceIp,
    Col::S(Str::TransactionMessageReference),
    Col::S(Str::Ttl),
    Col::S(Str::UserId),
];
