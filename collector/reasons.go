package collector

// Reasons label everything the collector could not decode. They are a
// public vocabulary: Prometheus labels and the exporters table use them.
const (
	ReasonTruncated         = "truncated"          // datagram shorter than its header or its own length fields say
	ReasonUnknownVersion    = "unknown_version"    // not NetFlow v5/v9, IPFIX or sFlow v5
	ReasonBadLength         = "bad_length"         // a length field that contradicts the datagram
	ReasonTemplateNotFound  = "template_not_found" // data set for a template not (yet) received
	ReasonEmptyTemplate     = "empty_template"     // template with no fields, or no fixed length
	ReasonTemplateLimit     = "template_limit"     // exporter exceeded max_templates_per_exporter
	ReasonMalformedSet      = "malformed_set"      // set header or template record that cannot be parsed
	ReasonMalformedRecord   = "malformed_record"   // data record shorter than its template
	ReasonMalformedSample   = "malformed_sample"   // sFlow sample or record that cannot be parsed
	ReasonTooManySamples    = "too_many_samples"   // sFlow counts beyond what the datagram can hold
	ReasonExporterLimit     = "exporter_limit"     // too many distinct exporters tracked
	ReasonQueueFull         = "queue_full"         // refused at the worker queue: worker behind and the exporter has its share waiting
	ReasonUnsupportedSample = "unsupported_sample" // sFlow sample format we do not decode
)
