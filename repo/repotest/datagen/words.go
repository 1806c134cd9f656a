package datagen

// Word lists for names and text. Changing any list changes every tree
// generated from it: testdata/golden.txt pins them.

var words = []string{
	"access", "account", "action", "adapter", "address", "agent", "alert", "alias",
	"archive", "array", "asset", "audit", "auth", "backend", "backup", "balance",
	"batch", "binding", "block", "board", "bridge", "bucket", "buffer", "build",
	"bundle", "cache", "camera", "channel", "check", "client", "clock", "cluster",
	"codec", "color", "column", "command", "commit", "config", "connection", "console",
	"container", "context", "counter", "cursor", "daemon", "data", "device", "digest",
	"disk", "domain", "driver", "entity", "entry", "event", "export", "feature",
	"feed", "field", "filter", "flag", "folder", "format", "frame", "gateway",
	"graph", "group", "handler", "header", "health", "history", "host", "image",
	"import", "index", "input", "item", "job", "journal", "kernel", "key",
	"label", "layer", "layout", "ledger", "light", "limit", "link", "listener",
	"loader", "lock", "log", "manager", "manifest", "map", "media", "member",
	"message", "meta", "metric", "mirror", "mode", "model", "module", "monitor",
	"mount", "network", "node", "notify", "object", "offset", "option", "order",
	"output", "owner", "package", "page", "panel", "parser", "path", "payload",
	"peer", "photo", "pipe", "plan", "player", "plugin", "policy", "pool",
	"port", "power", "preset", "printer", "probe", "process", "profile", "proxy",
	"queue", "quota", "range", "reader", "record", "region", "registry", "relay",
	"release", "remote", "report", "request", "resolver", "resource", "result", "retry",
	"role", "route", "rule", "runner", "sample", "scanner", "schedule", "schema",
	"scene", "scope", "script", "secret", "sensor", "server", "service", "session",
	"share", "shell", "signal", "snapshot", "socket", "source", "span", "state",
	"status", "storage", "store", "stream", "switch", "sync", "table", "tag",
	"target", "task", "template", "tenant", "thread", "ticket", "timer", "token",
	"topic", "tracker", "transport", "tree", "trigger", "tunnel", "update", "upload",
	"user", "value", "vault", "version", "video", "view", "volume", "watcher",
	"widget", "worker", "writer", "zone",
}

var projectNames = []string{
	"home-assistant-config", "nginx-proxy", "k3s-manifests", "dotfiles", "backup-scripts",
	"grafana-dashboards", "website", "go-tools", "photo-sorter", "media-server",
	"ansible-playbooks", "zigbee2mqtt", "pihole", "nextcloud-docker", "printer-firmware",
	"weather-station", "blog", "terraform-lab", "mqtt-bridge", "ci-runner",
}

var subdirNames = []string{
	"cmd", "internal", "pkg", "lib", "src", "util", "config", "templates",
	"tests", "docs", "scripts", "api", "handlers", "models", "static", "vendor",
	"assets", "migrations", "roles", "tasks", "files", "deploy", "tools", "web",
}

var firstNames = []string{
	"alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy",
	"mallory", "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter", "yuki",
}

var lastNames = []string{
	"smith", "jones", "garcia", "müller", "martin", "rossi", "tanaka", "kowalski", "nguyen", "dubois",
	"silva", "novak", "jensen", "murphy", "schmidt", "khan", "lopez", "ivanova", "berg", "costa",
}

var rooms = [...]string{
	"living_room", "kitchen", "bedroom", "office", "garage", "hallway", "bathroom", "garden",
	"basement", "attic", "nursery", "porch",
}

var sensorKinds = [...]string{
	"temperature", "humidity", "power", "energy", "illuminance", "battery", "co2", "pressure",
}

var statuses = []string{"pending", "paid", "shipped", "delivered", "cancelled", "refunded"}

var domains = []string{"example.org", "example.com", "mail.example.net", "home.arpa"}

var dumpNames = []string{"homeassistant", "nextcloud", "gitea", "immich", "paperless", "vaultwarden", "grafana", "miniflux"}

var vmNames = []string{"debian-12", "opnsense", "haos", "win11", "truenas-scale", "ubuntu-24.04"}

var videoNames = []string{
	"Holiday.Lisbon", "Birthday.Party", "Drone.Flight.Alps", "Garden.Timelapse", "Concert.Live",
	"School.Play", "Wedding.Ceremony", "Road.Trip", "Camera.Doorbell", "Screen.Recording",
}

var oddTextWords = []string{"TODO", "FIXME", "note", "see", "the", "and", "for", "with", "when", "from", "into", "not", "is", "a", "of", "to", "in"}
