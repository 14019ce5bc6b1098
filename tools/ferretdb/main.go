// Command ferretdb-embedded starts FerretDB v1 (the MongoDB wire protocol over
// PostgreSQL or SQLite) from its embeddable package. The upstream command cannot
// be used with `go install`: it panics at start without its generated build files.
package main

import (
	"context"
	"flag"
	"log"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:27017", "TCP address to listen on")
	handler := flag.String("handler", "postgresql", "backend: postgresql or sqlite")
	pgURL := flag.String("postgresql-url", "postgres://postgres@127.0.0.1:5432/ferretdb", "PostgreSQL URL")
	sqliteDir := flag.String("sqlite-dir", "", "SQLite data directory (must exist)")
	gcPercent := flag.Int("gc-percent", 400, "Go GC target percentage (GOGC, when set, wins)")
	flag.Parse()

	// FerretDB v1 allocates heavily while it decodes documents; with Go's default (100) the
	// collector took about a fifth of its CPU on the smoke benchmark. A larger target trades
	// a little memory for that CPU (measured: reads and searches ~20 % faster).
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(*gcPercent)
	}

	cfg := &ferretdb.Config{
		Listener: ferretdb.ListenerConfig{TCP: *listen},
		Handler:  *handler,
	}
	switch *handler {
	case "postgresql":
		cfg.PostgreSQLURL = *pgURL
	case "sqlite":
		if *sqliteDir == "" {
			log.Fatal("-sqlite-dir is required with -handler sqlite")
		}
		cfg.SQLiteURL = "file:" + *sqliteDir + "/"
	default:
		log.Fatalf("unknown handler %q", *handler)
	}

	f, err := ferretdb.New(cfg)
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log.Printf("FerretDB (%s) listening on %s", *handler, *listen)
	if err := f.Run(ctx); err != nil && ctx.Err() == nil {
		log.Fatal(err)
	}
}
