package gateway

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	reflectionv1alpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/plexus-mesh/plexus/gateway/config"
	"github.com/plexus-mesh/plexus/gateway/internal/grpcwire"
	"github.com/plexus-mesh/plexus/gateway/internal/transcode"
	"github.com/plexus-mesh/plexus/gateway/internal/upstream"
)

// grpcCatalog is what a snapshot knows of the gRPC services its routes serve: the
// descriptors compiled from the routes' grpc.transcode protos (for reflection), and the
// backends behind each service a route names (for health).
type grpcCatalog struct {
	files    *protoregistry.Files
	services map[string][]*upstream.Cluster // by full service name
	sources  map[string]string              // every .proto read, absolute path -> digest: the watcher's
}

// compileTranscoders compiles every route's grpc.transcode (the .proto files, with no
// protoc) and gives each route its transcoder; it fills s.grpc. An error names the
// route's place in the config and the .proto's file:line:col.
func (g *Gateway) compileTranscoders(s *snapshot) error {
	cfg := s.cfg
	cat := &grpcCatalog{files: new(protoregistry.Files), services: map[string][]*upstream.Cluster{}, sources: map[string]string{}}
	for i := range cfg.Routes {
		rc, rt := &cfg.Routes[i], s.Routes[i]
		if m := rc.Match.GRPC; m != nil {
			cat.add(m.Service, rt.Backends)
		}
		if rc.GRPC == nil || rc.GRPC.Transcode == nil {
			continue
		}
		t, err := transcode.Compile(rc.GRPC.Transcode, cfg.Path)
		if err != nil {
			return fmt.Errorf("%s: route %q: grpc.transcode: %w", cfg.Where(fmt.Sprintf("routes[%d].grpc.transcode", i)), rc.Name, err)
		}
		rt.Transcode = t
		for _, svc := range t.Services() {
			cat.add(svc, rt.Backends)
		}
		for _, fd := range t.Files() {
			cat.register(fd)
		}
		maps.Copy(cat.sources, t.Sources())
	}
	s.grpc = cat
	return nil
}

func (c *grpcCatalog) add(service string, backends []*upstream.Cluster) {
	for _, b := range backends {
		if !slices.Contains(c.services[service], b) {
			c.services[service] = append(c.services[service], b)
		}
	}
	if _, ok := c.services[service]; !ok {
		c.services[service] = nil
	}
}

// register adds fd and its imports, once each. Two routes may compile one file; the first
// one registered is the one reflection serves.
func (c *grpcCatalog) register(fd protoreflect.FileDescriptor) {
	if _, err := c.files.FindFileByPath(fd.Path()); err == nil {
		return
	}
	imports := fd.Imports()
	for i := 0; i < imports.Len(); i++ {
		c.register(imports.Get(i).FileDescriptor)
	}
	c.files.RegisterFile(fd) // a name clash between two routes' files: the first stays
}

// Paths of the gRPC services a listener answers itself (listeners[].grpc).
const (
	healthPrefix       = "/grpc.health.v1.Health/"
	reflectionPrefix   = "/grpc.reflection.v1.ServerReflection/"
	reflectionV1Prefix = "/grpc.reflection.v1alpha.ServerReflection/"
)

// grpcLocal serves the gRPC services of listener name's grpc: settings (reflection,
// health) in front of h, the stream stage, which gets every other request. The settings
// are read from the snapshot in force, so a reload turns them on and off.
func (g *Gateway) grpcLocal(name string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor == 2 && strings.HasPrefix(r.URL.Path, "/grpc.") && grpcwire.IsGRPC(r.Header) && !grpcwire.IsWeb(r.Header) {
			if lc := g.snap.Load().listener(name); lc != nil && lc.GRPC != nil {
				p := r.URL.Path
				if lc.GRPC.Health && strings.HasPrefix(p, healthPrefix) ||
					lc.GRPC.Reflection && (strings.HasPrefix(p, reflectionPrefix) || strings.HasPrefix(p, reflectionV1Prefix)) {
					g.grpcServer().ServeHTTP(w, r)
					return
				}
			}
		}
		h.ServeHTTP(w, r)
	})
}

// listener is the config of listener name, nil if s has none by that name.
func (s *snapshot) listener(name string) *config.Listener {
	for i := range s.cfg.Listeners {
		if s.cfg.Listeners[i].Name == name {
			return &s.cfg.Listeners[i]
		}
	}
	return nil
}

// grpcServer is the gateway's own gRPC server, made once: health and reflection, both
// reading the snapshot in force on every call.
func (g *Gateway) grpcServer() *grpc.Server {
	g.grpcOnce.Do(func() {
		srv := grpc.NewServer()
		healthpb.RegisterHealthServer(srv, &health{g: g})
		opts := reflection.ServerOptions{Services: catalogServices{g}, DescriptorResolver: catalogFiles{g}}
		reflectionv1.RegisterServerReflectionServer(srv, reflection.NewServerV1(opts))
		reflectionv1alpha.RegisterServerReflectionServer(srv, reflection.NewServer(opts))
		g.grpcSrv = srv
	})
	return g.grpcSrv
}

// catalogServices lists the services reflection tells of: the transcoded ones, with
// their methods, and the gateway's own.
type catalogServices struct{ g *Gateway }

func (c catalogServices) GetServiceInfo() map[string]grpc.ServiceInfo {
	s := c.g.snap.Load()
	out := map[string]grpc.ServiceInfo{}
	for name := range s.grpc.services {
		d, err := s.grpc.files.FindDescriptorByName(protoreflect.FullName(name))
		if err != nil {
			continue // a service a route matches, but whose .proto the gateway has not
		}
		sd, ok := d.(protoreflect.ServiceDescriptor)
		if !ok {
			continue
		}
		info := grpc.ServiceInfo{Metadata: sd.ParentFile().Path()}
		for i := 0; i < sd.Methods().Len(); i++ {
			m := sd.Methods().Get(i)
			info.Methods = append(info.Methods, grpc.MethodInfo{Name: string(m.Name()), IsClientStream: m.IsStreamingClient(), IsServerStream: m.IsStreamingServer()})
		}
		out[name] = info
	}
	for name, info := range c.g.grpcServer().GetServiceInfo() {
		if name == healthpb.Health_ServiceDesc.ServiceName && !s.anyListener(func(l *config.ListenerGRPC) bool { return l.Health }) {
			continue
		}
		out[name] = info
	}
	return out
}

// anyListener reports whether some listener's grpc: settings meet f.
func (s *snapshot) anyListener(f func(*config.ListenerGRPC) bool) bool {
	return slices.ContainsFunc(s.cfg.Listeners, func(l config.Listener) bool { return l.GRPC != nil && f(l.GRPC) })
}

// catalogFiles finds descriptors in the snapshot's compiled protos, then in those linked
// into the gateway (health, reflection, google.protobuf).
type catalogFiles struct{ g *Gateway }

var _ protodesc.Resolver = catalogFiles{}

func (c catalogFiles) FindFileByPath(path string) (protoreflect.FileDescriptor, error) {
	if fd, err := c.g.snap.Load().grpc.files.FindFileByPath(path); err == nil {
		return fd, nil
	}
	return protoregistry.GlobalFiles.FindFileByPath(path)
}

func (c catalogFiles) FindDescriptorByName(name protoreflect.FullName) (protoreflect.Descriptor, error) {
	if d, err := c.g.snap.Load().grpc.files.FindDescriptorByName(name); err == nil {
		return d, nil
	}
	return protoregistry.GlobalFiles.FindDescriptorByName(name)
}

// health answers grpc.health.v1.Health: the server as a whole ("") is SERVING until the
// gateway drains; a service a route names is SERVING while one of its backends has an
// endpoint that is up; a service no route names is NOT_FOUND, as grpc-go's server says.
type health struct {
	healthpb.UnimplementedHealthServer
	g *Gateway
}

// healthPoll is how often Watch looks at the status again.
var healthPoll = time.Second

func (h *health) status(service string) (healthpb.HealthCheckResponse_ServingStatus, bool) {
	if h.g.draining.Load() {
		return healthpb.HealthCheckResponse_NOT_SERVING, true
	}
	if service == "" {
		return healthpb.HealthCheckResponse_SERVING, true
	}
	backends, ok := h.g.snap.Load().grpc.services[service]
	if !ok {
		return healthpb.HealthCheckResponse_SERVICE_UNKNOWN, false
	}
	now := time.Now().UnixNano()
	for _, b := range backends {
		for _, ep := range b.Endpoints() {
			if ep.Up(now) {
				return healthpb.HealthCheckResponse_SERVING, true
			}
		}
	}
	return healthpb.HealthCheckResponse_NOT_SERVING, true
}

func (h *health) Check(_ context.Context, req *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	st, ok := h.status(req.GetService())
	if !ok {
		return nil, status.Errorf(codes.NotFound, "unknown service %q", req.GetService())
	}
	return &healthpb.HealthCheckResponse{Status: st}, nil
}

func (h *health) List(context.Context, *healthpb.HealthListRequest) (*healthpb.HealthListResponse, error) {
	out := &healthpb.HealthListResponse{Statuses: map[string]*healthpb.HealthCheckResponse{}}
	for name := range h.g.snap.Load().grpc.services {
		st, _ := h.status(name)
		out.Statuses[name] = &healthpb.HealthCheckResponse{Status: st}
	}
	st, _ := h.status("")
	out.Statuses[""] = &healthpb.HealthCheckResponse{Status: st}
	return out, nil
}

// Watch sends the status now, then each change, as the protocol asks: an unknown service
// is SERVICE_UNKNOWN (not an error), and may become known on a reload. Once the gateway
// drains, the watch ends after saying NOT_SERVING, so that it does not hold the listener's
// drain open.
func (h *health) Watch(req *healthpb.HealthCheckRequest, stream healthpb.Health_WatchServer) error {
	last := healthpb.HealthCheckResponse_ServingStatus(-1)
	tick := time.NewTicker(healthPoll)
	defer tick.Stop()
	for {
		if st, _ := h.status(req.GetService()); st != last {
			if err := stream.Send(&healthpb.HealthCheckResponse{Status: st}); err != nil {
				return err
			}
			last = st
		}
		if h.g.draining.Load() {
			return status.Error(codes.Unavailable, "the gateway is shutting down")
		}
		select {
		case <-stream.Context().Done():
			return stream.Context().Err()
		case <-tick.C:
		}
	}
}
