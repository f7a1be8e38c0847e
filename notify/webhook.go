package notify

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"maps"
	"net/http"
	"strconv"
	"time"
)

// Webhook request headers.
const (
	// HeaderSignature is "sha256=" and the lower-case hex HMAC-SHA256,
	// under the receiver's (or tenant's) key, of the timestamp header's
	// value, a ".", and the body: exactly the bytes received.
	HeaderSignature = "X-Flowhouse-Signature"
	// HeaderTimestamp is the Unix time of the attempt in seconds. It is
	// in the MAC, so a receiver that refuses old timestamps (say, more
	// than 5 minutes from its clock) refuses replays.
	HeaderTimestamp = "X-Flowhouse-Timestamp"
	// HeaderDelivery identifies the notification: the same on every
	// attempt, so that a receiver can drop a retry it already took.
	HeaderDelivery = "X-Flowhouse-Delivery"
)

// WebhookVersion is the payload's version, Alertmanager's.
const WebhookVersion = "4"

// WebhookMessage is the webhook's JSON body: Alertmanager's webhook
// payload (version 4), so that what takes Alertmanager's takes ours.
type WebhookMessage struct {
	Version  string `json:"version"`
	GroupKey string `json:"groupKey"`
	// TruncatedAlerts is how many alerts max_alerts left out.
	TruncatedAlerts int `json:"truncatedAlerts"`
	// Status is firing when any alert of the message fires.
	Status   Status `json:"status"`
	Receiver string `json:"receiver"`
	// GroupLabels are the tenant and the route's group_by labels.
	GroupLabels map[string]string `json:"groupLabels"`
	// CommonLabels and CommonAnnotations are those every alert of the
	// group has, with the same value.
	CommonLabels      map[string]string `json:"commonLabels"`
	CommonAnnotations map[string]string `json:"commonAnnotations"`
	ExternalURL       string            `json:"externalURL"`
	Alerts            []WebhookAlert    `json:"alerts"`
}

// WebhookAlert is one alert of a WebhookMessage.
type WebhookAlert struct {
	Status      Status            `json:"status"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	StartsAt    time.Time         `json:"startsAt"`
	// EndsAt is "0001-01-01T00:00:00Z" while the alert fires.
	EndsAt       time.Time `json:"endsAt"`
	GeneratorURL string    `json:"generatorURL"`
	Fingerprint  string    `json:"fingerprint"`
}

func webhookBody(x *notification, r *receiver, externalURL string) ([]byte, error) {
	m := WebhookMessage{
		Version:     WebhookVersion,
		GroupKey:    x.groupKey,
		Status:      x.status,
		Receiver:    r.name,
		GroupLabels: x.groupLabels,
		ExternalURL: externalURL,
	}
	labels := make([]map[string]string, len(x.alerts))
	annotations := make([]map[string]string, len(x.alerts))
	for i, a := range x.alerts {
		labels[i] = a.LabelSet()
		annotations[i] = a.Annotations
	}
	m.CommonLabels = common(labels)
	m.CommonAnnotations = common(annotations)
	alerts := x.alerts
	if r.maxAlerts > 0 && len(alerts) > r.maxAlerts {
		m.TruncatedAlerts = len(alerts) - r.maxAlerts
		alerts = alerts[:r.maxAlerts]
	}
	m.Alerts = make([]WebhookAlert, len(alerts))
	for i, a := range alerts {
		wa := WebhookAlert{
			Status:       a.Status,
			Labels:       labels[i],
			Annotations:  a.Annotations,
			StartsAt:     a.StartsAt.UTC(),
			GeneratorURL: a.GeneratorURL,
			Fingerprint:  a.Fingerprint,
		}
		if wa.Annotations == nil {
			wa.Annotations = map[string]string{}
		}
		if a.Status == StatusResolved {
			wa.EndsAt = a.EndsAt.UTC()
		}
		m.Alerts[i] = wa
	}
	return json.Marshal(m)
}

// common is the pairs every map has with the same value ({} when none).
func common(ms []map[string]string) map[string]string {
	out := map[string]string{}
	if len(ms) == 0 {
		return out
	}
	maps.Copy(out, ms[0])
	for _, m := range ms[1:] {
		for k, v := range out {
			if w, ok := m[k]; !ok || w != v {
				delete(out, k)
			}
		}
	}
	return out
}

// Sign returns the X-Flowhouse-Signature value for a body sent at
// timestamp (the X-Flowhouse-Timestamp value): "sha256=" and the hex
// HMAC-SHA256 of timestamp + "." + body under key.
func Sign(key []byte, timestamp string, body []byte) string {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(timestamp))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// Verify checks a webhook request as a receiver should: the signature
// over the timestamp and the body, in constant time, and the timestamp
// within maxSkew of now. For receivers written in Go (and for tests).
func Verify(key []byte, header http.Header, body []byte, now time.Time, maxSkew time.Duration) bool {
	ts := header.Get(HeaderTimestamp)
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return false
	}
	skew := now.Sub(time.Unix(sec, 0))
	if skew > maxSkew || skew < -maxSkew {
		return false
	}
	return hmac.Equal([]byte(header.Get(HeaderSignature)), []byte(Sign(key, ts, body)))
}

// signatureHeaders sign one attempt: a new timestamp each time, so that
// a retry is not refused as a replay.
func signatureHeaders(key []byte, j *job, now time.Time) http.Header {
	ts := strconv.FormatInt(now.Unix(), 10)
	h := http.Header{}
	h.Set(HeaderTimestamp, ts)
	h.Set(HeaderSignature, Sign(key, ts, j.body))
	h.Set(HeaderDelivery, j.id)
	return h
}
